package columnar

import (
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
)

// Column names. Consumers (SQL, pandas, Kafka readers) address columns by
// these names, so they are part of the output contract.
const (
	ColStudentID       = "student_id"
	ColSeqLen          = "seq_len"
	ColMastery         = "mastery"
	ColWindowStart     = "window_start"
	ColModelVersion    = "model_version"
	ColScoredAt        = "scored_at"
	ColSourceTopic     = "source_topic"
	ColSourcePartition = "source_partition"
	ColSourceOffset    = "source_offset"
	ColStep            = "step"
	ColSkillID         = "skill_id"
	ColCorrect         = "correct"
)

// Schema metadata keys and the producer value.
const (
	MetaNumSkills    = "num_skills"
	MetaModelVersion = "model_version"
	MetaProducer     = "producer"
	Producer         = "dktscore"
)

// Column positions in the mastery schema; the source columns follow
// scored_at only with Config.WithSource.
const (
	mStudentID = iota
	mSeqLen
	mMastery
	mWindowStart
	mModelVersion
	mScoredAt
	mSourceTopic
	mSourcePartition
	mSourceOffset
)

// Column positions in the trajectory schema.
const (
	tStudentID = iota
	tStep
	tSkillID
	tCorrect
	tMastery
	tModelVersion
)

// scoredAtType is timestamp[us, tz=UTC]: a tz-aware instant, so readers never
// reinterpret it in their local zone.
var scoredAtType = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}

func masteryType(numSkills int) arrow.DataType {
	return arrow.FixedSizeListOfField(int32(numSkills), arrow.Field{Name: "item", Type: arrow.PrimitiveTypes.Float32})
}

func schemaMetadata(cfg Config) arrow.Metadata {
	return arrow.NewMetadata(
		[]string{MetaNumSkills, MetaModelVersion, MetaProducer},
		[]string{strconv.Itoa(cfg.NumSkills), cfg.ModelVersion, Producer},
	)
}

// MasterySchema is the Arrow schema of mastery rows for cfg (see the package
// documentation). cfg must be valid.
func MasterySchema(cfg Config) *arrow.Schema {
	fields := []arrow.Field{
		{Name: ColStudentID, Type: arrow.BinaryTypes.String},
		{Name: ColSeqLen, Type: arrow.PrimitiveTypes.Int32},
		{Name: ColMastery, Type: masteryType(cfg.NumSkills)},
		{Name: ColWindowStart, Type: arrow.PrimitiveTypes.Int32},
		{Name: ColModelVersion, Type: arrow.BinaryTypes.String},
		{Name: ColScoredAt, Type: scoredAtType},
	}
	if cfg.WithSource {
		fields = append(fields,
			arrow.Field{Name: ColSourceTopic, Type: arrow.BinaryTypes.String},
			arrow.Field{Name: ColSourcePartition, Type: arrow.PrimitiveTypes.Int32},
			arrow.Field{Name: ColSourceOffset, Type: arrow.PrimitiveTypes.Int64},
		)
	}
	md := schemaMetadata(cfg)
	return arrow.NewSchema(fields, &md)
}

// TrajectorySchema is the Arrow schema of per-step rows for cfg (see the
// package documentation). cfg must be valid.
func TrajectorySchema(cfg Config) *arrow.Schema {
	fields := []arrow.Field{
		{Name: ColStudentID, Type: arrow.BinaryTypes.String},
		{Name: ColStep, Type: arrow.PrimitiveTypes.Int32},
		{Name: ColSkillID, Type: arrow.PrimitiveTypes.Int32},
		{Name: ColCorrect, Type: arrow.PrimitiveTypes.Int8},
		{Name: ColMastery, Type: masteryType(cfg.NumSkills)},
		{Name: ColModelVersion, Type: arrow.BinaryTypes.String},
	}
	md := schemaMetadata(cfg)
	return arrow.NewSchema(fields, &md)
}
