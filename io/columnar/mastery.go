package columnar

import (
	"io"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// MasteryRow is one student's result: mastery after the latest interaction.
type MasteryRow struct {
	StudentID string
	// SeqLen is n, the number of interactions fed to the model.
	SeqLen int32
	// WindowStart is the index in the full history of the first interaction
	// fed; 0 unless the history was windowed to max_steps.
	WindowStart int32
	// Mastery is pred_all[b, n-1, :]; its length must be Config.NumSkills.
	Mastery []float32
	// ModelVersion is the version that scored this row; empty means
	// Config.ModelVersion. A worker that reloads models mixes versions in one
	// file, so each row says which one it came from.
	ModelVersion string
	// Source of the input record; written only with Config.WithSource.
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
}

// masteryBuilder appends MasteryRows to the columns of MasterySchema.
type masteryBuilder struct {
	cfg             Config
	rb              *array.RecordBuilder
	studentID       *array.StringBuilder
	seqLen          *array.Int32Builder
	mastery         *array.FixedSizeListBuilder
	masteryValues   *array.Float32Builder
	windowStart     *array.Int32Builder
	modelVersion    *array.StringBuilder
	scoredAt        *array.TimestampBuilder
	sourceTopic     *array.StringBuilder
	sourcePartition *array.Int32Builder
	sourceOffset    *array.Int64Builder
}

func newMasteryBuilder(cfg Config) *masteryBuilder {
	rb := array.NewRecordBuilder(cfg.allocator(), MasterySchema(cfg))
	b := &masteryBuilder{
		cfg:          cfg,
		rb:           rb,
		studentID:    rb.Field(mStudentID).(*array.StringBuilder),
		seqLen:       rb.Field(mSeqLen).(*array.Int32Builder),
		mastery:      rb.Field(mMastery).(*array.FixedSizeListBuilder),
		windowStart:  rb.Field(mWindowStart).(*array.Int32Builder),
		modelVersion: rb.Field(mModelVersion).(*array.StringBuilder),
		scoredAt:     rb.Field(mScoredAt).(*array.TimestampBuilder),
	}
	b.masteryValues = b.mastery.ValueBuilder().(*array.Float32Builder)
	if cfg.WithSource {
		b.sourceTopic = rb.Field(mSourceTopic).(*array.StringBuilder)
		b.sourcePartition = rb.Field(mSourcePartition).(*array.Int32Builder)
		b.sourceOffset = rb.Field(mSourceOffset).(*array.Int64Builder)
	}
	return b
}

// check rejects a row that would make a file consumers cannot read or trust.
func (b *masteryBuilder) check(r *MasteryRow) error {
	if !utf8.ValidString(r.StudentID) {
		return rowError("student %q: student_id is not valid UTF-8; utf8 columns must hold UTF-8", r.StudentID)
	}
	if len(r.Mastery) != b.cfg.NumSkills {
		return rowError("student %q: mastery has %d values, want num_skills=%d (pred_all[b, n-1, :] of a model with %d skills)",
			r.StudentID, len(r.Mastery), b.cfg.NumSkills, b.cfg.NumSkills)
	}
	if b.cfg.WithSource && !utf8.ValidString(r.SourceTopic) {
		return rowError("student %q: source_topic %q is not valid UTF-8", r.StudentID, r.SourceTopic)
	}
	return nil
}

// append adds r to every column except scored_at, which appendScoredAt fills
// when the batch is written.
func (b *masteryBuilder) append(r *MasteryRow) {
	b.studentID.Append(r.StudentID)
	b.seqLen.Append(r.SeqLen)
	b.mastery.Append(true)
	b.masteryValues.AppendValues(r.Mastery, nil)
	b.windowStart.Append(r.WindowStart)
	if r.ModelVersion != "" {
		b.modelVersion.Append(r.ModelVersion)
	} else {
		b.modelVersion.Append(b.cfg.ModelVersion)
	}
	if b.cfg.WithSource {
		b.sourceTopic.Append(r.SourceTopic)
		b.sourcePartition.Append(r.SourcePartition)
		b.sourceOffset.Append(r.SourceOffset)
	}
}

func (b *masteryBuilder) appendScoredAt(n int, at time.Time) {
	ts := arrow.Timestamp(at.UnixMicro())
	b.scoredAt.Reserve(n)
	for range n {
		b.scoredAt.UnsafeAppend(ts)
	}
}

// MasteryWriter streams MasteryRows to a Parquet or Arrow IPC file (see
// rowWriter for Write, Close and Abort). It is not safe for concurrent use.
type MasteryWriter struct{ rowWriter[MasteryRow] }

// CreateMasteryFile creates the output at path. The file is written under a
// temporary name in the same directory and appears at path only when Close
// succeeds; Abort or a failed Close removes it.
func CreateMasteryFile(path string, cfg Config) (*MasteryWriter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f, err := createPendingFile(path)
	if err != nil {
		return nil, err
	}
	return newMasteryWriter(f.f, f, cfg)
}

// NewMasteryWriter writes to out, which the caller owns and closes after
// Close. out gets a partial file if writing fails midway.
func NewMasteryWriter(out io.Writer, cfg Config) (*MasteryWriter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newMasteryWriter(out, nil, cfg)
}

func newMasteryWriter(out io.Writer, file *pendingFile, cfg Config) (*MasteryWriter, error) {
	b := newMasteryBuilder(cfg)
	w, err := openRowWriter[MasteryRow](out, file, b, b.rb, cfg)
	if err != nil {
		return nil, err
	}
	w.bw.beforeFlush = b.appendScoredAt
	return &MasteryWriter{w}, nil
}
