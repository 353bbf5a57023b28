package columnar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// State files carry each student's final LSTM state after their whole history
// (`dktscore score --emit-state`), to be loaded into event mode's changelog
// (`dktscore state load`) before going live.

// ColState is the state column: per layer c then h, layer order (model.StateSize floats).
const ColState = "state"

// MetaStateSize is the schema metadata key for the length of every state.
const MetaStateSize = "state_size"

// StateRow is one student's final state.
type StateRow struct {
	StudentID    string
	ModelVersion string // the model whose weights produced State; empty means Config.ModelVersion
	Events       int64  // interactions stepped (history length)
	State        []float32
}

// StateSchema is the Arrow schema of state rows: student_id, model_version,
// events int64, state list<float32>.
func StateSchema(cfg Config, stateSize int) *arrow.Schema {
	md := arrow.NewMetadata(
		[]string{MetaNumSkills, MetaModelVersion, MetaProducer, MetaStateSize},
		[]string{strconv.Itoa(cfg.NumSkills), cfg.ModelVersion, Producer, strconv.Itoa(stateSize)},
	)
	return arrow.NewSchema([]arrow.Field{
		{Name: ColStudentID, Type: arrow.BinaryTypes.String},
		{Name: ColModelVersion, Type: arrow.BinaryTypes.String},
		{Name: ColEvents, Type: arrow.PrimitiveTypes.Int64},
		{Name: ColState, Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)},
	}, &md)
}

// StateWriter streams StateRows to a Parquet or Arrow IPC file (see rowWriter
// for Write, Close and Abort). It is not safe for concurrent use.
type StateWriter struct{ rowWriter[StateRow] }

// stateBuilder appends StateRows to the columns of StateSchema.
type stateBuilder struct {
	cfg          Config
	stateSize    int
	studentID    *array.StringBuilder
	modelVersion *array.StringBuilder
	events       *array.Int64Builder
	state        *array.ListBuilder
	stateValues  *array.Float32Builder
}

// CreateStateFile creates the output at path; like CreateMasteryFile, the file
// appears at path only when Close succeeds. Every state must have stateSize
// values. Config.WithSource is ignored.
func CreateStateFile(path string, cfg Config, stateSize int) (*StateWriter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if stateSize < 1 {
		return nil, fmt.Errorf("%w: state size %d: the model's StateSize must be positive (does it have a step signature?)", ErrInvalidConfig, stateSize)
	}
	f, err := createPendingFile(path)
	if err != nil {
		return nil, err
	}
	rb := array.NewRecordBuilder(cfg.allocator(), StateSchema(cfg, stateSize))
	b := &stateBuilder{
		cfg:          cfg,
		stateSize:    stateSize,
		studentID:    rb.Field(0).(*array.StringBuilder),
		modelVersion: rb.Field(1).(*array.StringBuilder),
		events:       rb.Field(2).(*array.Int64Builder),
		state:        rb.Field(3).(*array.ListBuilder),
	}
	b.stateValues = b.state.ValueBuilder().(*array.Float32Builder)
	w, err := openRowWriter[StateRow](f.f, f, b, rb, cfg)
	if err != nil {
		return nil, err
	}
	return &StateWriter{w}, nil
}

// check refuses a row that is not UTF-8, has the wrong state length or
// negative events, naming the student.
func (b *stateBuilder) check(r *StateRow) error {
	switch {
	case r.StudentID == "" || !utf8.ValidString(r.StudentID):
		return rowError("student %q: student_id is empty or not valid UTF-8", r.StudentID)
	case len(r.State) != b.stateSize:
		return rowError("student %q: state has %d values, want the model's state size %d", r.StudentID, len(r.State), b.stateSize)
	case r.Events < 0:
		return rowError("student %q: events is %d", r.StudentID, r.Events)
	}
	return nil
}

func (b *stateBuilder) append(r *StateRow) {
	b.studentID.Append(r.StudentID)
	if r.ModelVersion != "" {
		b.modelVersion.Append(r.ModelVersion)
	} else {
		b.modelVersion.Append(b.cfg.ModelVersion)
	}
	b.events.Append(r.Events)
	b.state.Append(true)
	b.stateValues.AppendValues(r.State, nil)
}

// StateReader reads a state file written by StateWriter (or any Parquet file
// with the same columns, e.g. from pyarrow), one record batch at a time.
type StateReader struct {
	path   string
	pf     *file.Reader // closes the file
	rr     pqarrow.RecordReader
	batch  arrow.RecordBatch
	cols   stateColumns
	next   int // row of batch to return next
	row    int64
	closed bool
}

type stateColumns struct {
	studentID, modelVersion *array.String
	events                  *array.Int64
	state                   *array.List
	values                  *array.Float32
}

// OpenStateFile opens a Parquet state file and checks its columns.
func OpenStateFile(ctx context.Context, path string) (*StateReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pf, err := file.NewParquetReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: not a Parquet file: %w (write it with `dktscore score --emit-state`)", path, err)
	}
	fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 4096}, memory.DefaultAllocator)
	if err != nil {
		pf.Close()
		return nil, fmt.Errorf("%s: reading the Parquet schema: %w", path, err)
	}
	schema, err := fr.Schema()
	if err != nil {
		pf.Close()
		return nil, fmt.Errorf("%s: reading the Parquet schema: %w", path, err)
	}
	want := []struct {
		name string
		ok   func(arrow.DataType) bool
		desc string
	}{
		{ColStudentID, isString, "string"},
		{ColModelVersion, isString, "string"},
		{ColEvents, func(t arrow.DataType) bool { return t.ID() == arrow.INT64 }, "int64"},
		{ColState, func(t arrow.DataType) bool {
			l, ok := t.(*arrow.ListType)
			return ok && l.Elem().ID() == arrow.FLOAT32
		}, "list<float32>"},
	}
	indices := make([]int, len(want))
	var problems []error
	for i, c := range want {
		found := schema.FieldIndices(c.name)
		switch {
		case len(found) == 0:
			problems = append(problems, fmt.Errorf("no column %q (%s)", c.name, c.desc))
		case !c.ok(schema.Field(found[0]).Type):
			problems = append(problems, fmt.Errorf("column %q is %s, want %s", c.name, schema.Field(found[0]).Type, c.desc))
		default:
			indices[i] = found[0]
		}
	}
	if err := errors.Join(problems...); err != nil {
		pf.Close()
		return nil, fmt.Errorf("%s is not a state file (columns student_id, model_version, events, state as written by `dktscore score --emit-state`):\n%w", path, err)
	}
	rr, err := fr.GetRecordReader(ctx, indices, nil)
	if err != nil {
		pf.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &StateReader{path: path, pf: pf, rr: rr}, nil
}

func isString(t arrow.DataType) bool { return t.ID() == arrow.STRING }

// Next returns the next row, or io.EOF after the last. A row with a null, an
// empty student_id or model_version, negative events or non-finite state
// values is an error naming the row (0-based) and the student.
func (r *StateReader) Next() (StateRow, error) {
	for r.batch == nil || r.next >= int(r.batch.NumRows()) {
		if r.batch != nil {
			r.batch.Release()
			r.batch = nil
		}
		if !r.rr.Next() {
			if err := r.rr.Err(); err != nil && !errors.Is(err, io.EOF) {
				return StateRow{}, fmt.Errorf("%s: after row %d: %w", r.path, r.row, err)
			}
			return StateRow{}, io.EOF
		}
		r.batch = r.rr.RecordBatch()
		r.batch.Retain()
		r.next = 0
		list := r.batch.Column(3).(*array.List)
		r.cols = stateColumns{
			studentID:    r.batch.Column(0).(*array.String),
			modelVersion: r.batch.Column(1).(*array.String),
			events:       r.batch.Column(2).(*array.Int64),
			state:        list,
			values:       list.ListValues().(*array.Float32),
		}
	}
	i, row := r.next, r.row
	r.next++
	r.row++
	c := r.cols
	bad := func(format string, args ...any) (StateRow, error) {
		return StateRow{}, fmt.Errorf("%s row %d: "+format, append([]any{r.path, row}, args...)...)
	}
	if c.studentID.IsNull(i) || c.modelVersion.IsNull(i) || c.events.IsNull(i) || c.state.IsNull(i) {
		return bad("a null value; every column of a state row must be set")
	}
	out := StateRow{StudentID: c.studentID.Value(i), ModelVersion: c.modelVersion.Value(i), Events: c.events.Value(i)}
	start, end := c.state.ValueOffsets(i)
	switch {
	case out.StudentID == "":
		return bad("student_id is empty")
	case out.ModelVersion == "":
		return bad("student %q: model_version is empty", out.StudentID)
	case out.Events < 0:
		return bad("student %q: events is %d", out.StudentID, out.Events)
	case end == start:
		return bad("student %q: the state is empty", out.StudentID)
	}
	out.State = make([]float32, end-start)
	for k := range out.State {
		v := c.values.Value(int(start) + k)
		if c.values.IsNull(int(start)+k) || math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return bad("student %q: state[%d] is null or not finite; an LSTM state is finite", out.StudentID, k)
		}
		out.State[k] = v
	}
	return out, nil
}

// Close releases the file.
func (r *StateReader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.batch != nil {
		r.batch.Release()
	}
	r.rr.Release()
	return r.pf.Close()
}
