package columnar

import (
	"bytes"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
)

// Columns of the event schema beyond the shared ones.
const (
	ColEventOffset = "event_offset"
	ColEvents      = "events"
)

// EventRow is the result of one applied event (event mode): the student's
// mastery after it.
type EventRow struct {
	StudentID string
	// EventOffset is the input offset of the event.
	EventOffset int64
	SkillID     int32
	// Correct is 1 if the student answered correctly, else 0.
	Correct int8
	// Events is the student's history length after this event.
	Events int64
	// Mastery is P(correct next) per skill after the event; its length must
	// be Config.NumSkills.
	Mastery         []float32
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
}

// EventSchema is the Arrow schema of event rows:
//
//	student_id        utf8
//	event_offset      int64                                input offset of the event
//	skill_id          int32
//	correct           int8
//	events            int64                                history length after the event
//	mastery           fixed_size_list<item: float32>[S]    mastery after the event
//	model_version     utf8
//	scored_at         timestamp[us, tz=UTC]
//	source_topic      utf8
//	source_partition  int32
//	source_offset     int64
//
// with the same schema metadata as MasterySchema. cfg must be valid.
func EventSchema(cfg Config) *arrow.Schema {
	fields := []arrow.Field{
		{Name: ColStudentID, Type: arrow.BinaryTypes.String},
		{Name: ColEventOffset, Type: arrow.PrimitiveTypes.Int64},
		{Name: ColSkillID, Type: arrow.PrimitiveTypes.Int32},
		{Name: ColCorrect, Type: arrow.PrimitiveTypes.Int8},
		{Name: ColEvents, Type: arrow.PrimitiveTypes.Int64},
		{Name: ColMastery, Type: masteryType(cfg.NumSkills)},
		{Name: ColModelVersion, Type: arrow.BinaryTypes.String},
		{Name: ColScoredAt, Type: scoredAtType},
		{Name: ColSourceTopic, Type: arrow.BinaryTypes.String},
		{Name: ColSourcePartition, Type: arrow.PrimitiveTypes.Int32},
		{Name: ColSourceOffset, Type: arrow.PrimitiveTypes.Int64},
	}
	md := schemaMetadata(cfg)
	return arrow.NewSchema(fields, &md)
}

// EncodeEventIPCStream encodes rows as one Arrow IPC stream (schema, one
// record batch, end-of-stream marker): the value of one Kafka message of
// event mode. A bad row (mastery length, correct, UTF-8) rejects the call
// with an error wrapping ErrBadRow.
func EncodeEventIPCStream(cfg Config, rows []EventRow, scoredAt time.Time) ([]byte, error) {
	if err := cfg.validate(false); err != nil {
		return nil, err
	}
	for i := range rows {
		if err := checkEventRow(cfg, &rows[i]); err != nil {
			return nil, err
		}
	}
	rb := array.NewRecordBuilder(cfg.allocator(), EventSchema(cfg))
	defer rb.Release()
	studentID := rb.Field(0).(*array.StringBuilder)
	eventOffset := rb.Field(1).(*array.Int64Builder)
	skillID := rb.Field(2).(*array.Int32Builder)
	correct := rb.Field(3).(*array.Int8Builder)
	events := rb.Field(4).(*array.Int64Builder)
	mastery := rb.Field(5).(*array.FixedSizeListBuilder)
	masteryValues := mastery.ValueBuilder().(*array.Float32Builder)
	modelVersion := rb.Field(6).(*array.StringBuilder)
	at := rb.Field(7).(*array.TimestampBuilder)
	sourceTopic := rb.Field(8).(*array.StringBuilder)
	sourcePartition := rb.Field(9).(*array.Int32Builder)
	sourceOffset := rb.Field(10).(*array.Int64Builder)
	ts := arrow.Timestamp(scoredAt.UnixMicro())
	for i := range rows {
		r := &rows[i]
		studentID.Append(r.StudentID)
		eventOffset.Append(r.EventOffset)
		skillID.Append(r.SkillID)
		correct.Append(r.Correct)
		events.Append(r.Events)
		mastery.Append(true)
		masteryValues.AppendValues(r.Mastery, nil)
		modelVersion.Append(cfg.ModelVersion)
		at.Append(ts)
		sourceTopic.Append(r.SourceTopic)
		sourcePartition.Append(r.SourcePartition)
		sourceOffset.Append(r.SourceOffset)
	}
	rec := rb.NewRecordBatch()
	defer rec.Release()

	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(rec.Schema()), ipc.WithAllocator(cfg.allocator()))
	if err := w.Write(rec); err != nil {
		w.Close()
		return nil, fmt.Errorf("columnar: encode arrow ipc stream of events: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("columnar: finish arrow ipc stream of events: %w", err)
	}
	return buf.Bytes(), nil
}

func checkEventRow(cfg Config, r *EventRow) error {
	switch {
	case !utf8.ValidString(r.StudentID):
		return rowError("student %q event %d: student_id is not valid UTF-8; utf8 columns must hold UTF-8", r.StudentID, r.EventOffset)
	case len(r.Mastery) != cfg.NumSkills:
		return rowError("student %q event %d: mastery has %d values, want num_skills=%d", r.StudentID, r.EventOffset, len(r.Mastery), cfg.NumSkills)
	case r.Correct != 0 && r.Correct != 1:
		return rowError("student %q event %d: correct is %d, want 0 or 1", r.StudentID, r.EventOffset, r.Correct)
	case !utf8.ValidString(r.SourceTopic):
		return rowError("student %q event %d: source_topic %q is not valid UTF-8", r.StudentID, r.EventOffset, r.SourceTopic)
	}
	return nil
}
