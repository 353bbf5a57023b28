package columnar

import (
	"io"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow/array"
)

// StepRow is one step of one student's history with the mastery after it.
type StepRow struct {
	StudentID string
	// Step is the 0-based index t of the interaction.
	Step    int32
	SkillID int32
	// Correct is 1 if the student answered correctly, else 0.
	Correct int8
	// Mastery is pred_all[b, t, :]; its length must be Config.NumSkills.
	Mastery []float32
}

// trajectoryBuilder appends StepRows to the columns of TrajectorySchema.
type trajectoryBuilder struct {
	cfg           Config
	rb            *array.RecordBuilder
	studentID     *array.StringBuilder
	step          *array.Int32Builder
	skillID       *array.Int32Builder
	correct       *array.Int8Builder
	mastery       *array.FixedSizeListBuilder
	masteryValues *array.Float32Builder
	modelVersion  *array.StringBuilder
}

func newTrajectoryBuilder(cfg Config) *trajectoryBuilder {
	rb := array.NewRecordBuilder(cfg.allocator(), TrajectorySchema(cfg))
	b := &trajectoryBuilder{
		cfg:          cfg,
		rb:           rb,
		studentID:    rb.Field(tStudentID).(*array.StringBuilder),
		step:         rb.Field(tStep).(*array.Int32Builder),
		skillID:      rb.Field(tSkillID).(*array.Int32Builder),
		correct:      rb.Field(tCorrect).(*array.Int8Builder),
		mastery:      rb.Field(tMastery).(*array.FixedSizeListBuilder),
		modelVersion: rb.Field(tModelVersion).(*array.StringBuilder),
	}
	b.masteryValues = b.mastery.ValueBuilder().(*array.Float32Builder)
	return b
}

func (b *trajectoryBuilder) check(r *StepRow) error {
	if !utf8.ValidString(r.StudentID) {
		return rowError("student %q step %d: student_id is not valid UTF-8; utf8 columns must hold UTF-8", r.StudentID, r.Step)
	}
	if len(r.Mastery) != b.cfg.NumSkills {
		return rowError("student %q step %d: mastery has %d values, want num_skills=%d (pred_all[b, t, :] of a model with %d skills)",
			r.StudentID, r.Step, len(r.Mastery), b.cfg.NumSkills, b.cfg.NumSkills)
	}
	if r.Correct != 0 && r.Correct != 1 {
		return rowError("student %q step %d: correct is %d, want 0 or 1", r.StudentID, r.Step, r.Correct)
	}
	return nil
}

func (b *trajectoryBuilder) append(r *StepRow) {
	b.studentID.Append(r.StudentID)
	b.step.Append(r.Step)
	b.skillID.Append(r.SkillID)
	b.correct.Append(r.Correct)
	b.mastery.Append(true)
	b.masteryValues.AppendValues(r.Mastery, nil)
	b.modelVersion.Append(b.cfg.ModelVersion)
}

// TrajectoryWriter streams StepRows to a Parquet or Arrow IPC file (see
// rowWriter for Write, Close and Abort). It is not safe for concurrent use.
type TrajectoryWriter struct{ rowWriter[StepRow] }

// CreateTrajectoryFile creates the output at path; like CreateMasteryFile, the
// file appears at path only when Close succeeds. Config.WithSource is ignored.
func CreateTrajectoryFile(path string, cfg Config) (*TrajectoryWriter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f, err := createPendingFile(path)
	if err != nil {
		return nil, err
	}
	return newTrajectoryWriter(f.f, f, cfg)
}

// NewTrajectoryWriter writes to out, which the caller owns and closes after Close.
func NewTrajectoryWriter(out io.Writer, cfg Config) (*TrajectoryWriter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return newTrajectoryWriter(out, nil, cfg)
}

func newTrajectoryWriter(out io.Writer, file *pendingFile, cfg Config) (*TrajectoryWriter, error) {
	b := newTrajectoryBuilder(cfg)
	w, err := openRowWriter[StepRow](out, file, b, b.rb, cfg)
	if err != nil {
		return nil, err
	}
	return &TrajectoryWriter{w}, nil
}
