package columnar

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

// clockStart is microsecond-aligned so scored_at round-trips exactly.
var clockStart = time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)

// steppingClock returns clockStart, then one second later on each call, so
// each batch gets its own scored_at and tests can tell batches apart.
func steppingClock() func() time.Time {
	calls := 0
	return func() time.Time {
		t := clockStart.Add(time.Duration(calls) * time.Second)
		calls++
		return t
	}
}

// expectedScoredAt is the scored_at of row i when the clock ticks once per batch.
func expectedScoredAt(i, rowsPerBatch int) time.Time {
	return clockStart.Add(time.Duration(i/rowsPerBatch) * time.Second)
}

func testConfig(t *testing.T, format Format, withSource bool) (Config, *memory.CheckedAllocator) {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	return Config{
		NumSkills:    5,
		ModelVersion: "dkt-test-1",
		Format:       format,
		RowsPerBatch: 3,
		WithSource:   withSource,
		Now:          steppingClock(),
		mem:          mem,
	}, mem
}

// masteryValue gives row i skill k a distinct float32, including values that
// are not exact in decimal, and the ends of [0, 1].
func masteryValue(i, k int) float32 {
	switch (i + k) % 7 {
	case 0:
		return 0
	case 1:
		return 1
	default:
		return float32(math.Mod(float64(i)*0.1234567+float64(k)*0.0765432, 1))
	}
}

func makeMasteryRows(n, numSkills int) []MasteryRow {
	rows := make([]MasteryRow, n)
	for i := range rows {
		m := make([]float32, numSkills)
		for k := range m {
			m[k] = masteryValue(i, k)
		}
		rows[i] = MasteryRow{
			StudentID:       "stü-" + strconv.Itoa(i),
			SeqLen:          int32(i + 1),
			WindowStart:     int32(i % 3 * 100),
			Mastery:         m,
			SourceTopic:     "interactions-" + strconv.Itoa(i%2),
			SourcePartition: int32(i % 4),
			SourceOffset:    int64(i)*1_000_000_007 + 3,
		}
	}
	return rows
}

func makeStepRows(students, steps, numSkills int) []StepRow {
	var rows []StepRow
	for s := range students {
		for step := range steps {
			m := make([]float32, numSkills)
			for k := range m {
				m[k] = masteryValue(s*steps+step, k)
			}
			rows = append(rows, StepRow{
				StudentID: fmt.Sprintf("s%d", s),
				Step:      int32(step),
				SkillID:   int32((s + step) % numSkills),
				Correct:   int8((s + step) % 2),
				Mastery:   m,
			})
		}
	}
	return rows
}

// readFile reads a whole output file back with arrow-go and reports how many
// record batches (Arrow) or row groups (Parquet) it holds.
func readFile(t *testing.T, path string, format Format) (arrow.Table, int) {
	t.Helper()
	switch format {
	case FormatParquet:
		pf, err := file.OpenParquetFile(path, false)
		if err != nil {
			t.Fatalf("open parquet %s: %v", path, err)
		}
		defer pf.Close()
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
		if err != nil {
			t.Fatal(err)
		}
		tbl, err := fr.ReadTable(context.Background())
		if err != nil {
			t.Fatalf("read parquet %s: %v", path, err)
		}
		defer tbl.Release()
		// ReadTable drops the schema metadata (v18.8.0); Schema() has it.
		sc, err := fr.Schema()
		if err != nil {
			t.Fatal(err)
		}
		cols := make([]arrow.Column, tbl.NumCols())
		for i := range cols {
			cols[i] = *tbl.Column(i)
		}
		return array.NewTable(sc, cols, tbl.NumRows()), pf.NumRowGroups()
	case FormatArrow:
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r, err := ipc.NewFileReader(f)
		if err != nil {
			t.Fatalf("open arrow file %s: %v", path, err)
		}
		defer r.Close()
		var recs []arrow.RecordBatch
		for i := range r.NumRecords() {
			rec, err := r.RecordBatchAt(i) // ours to release
			if err != nil {
				t.Fatalf("read batch %d of %s: %v", i, path, err)
			}
			recs = append(recs, rec)
		}
		tbl := array.NewTableFromRecords(r.Schema(), recs)
		for _, rec := range recs {
			rec.Release()
		}
		return tbl, len(recs)
	}
	t.Fatalf("unknown format %q", format)
	return nil, 0
}

func readStream(t *testing.T, data []byte) (arrow.Table, int) {
	t.Helper()
	r, err := ipc.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("open ipc stream: %v", err)
	}
	defer r.Release()
	var recs []arrow.RecordBatch
	for r.Next() {
		rec := r.RecordBatch()
		rec.Retain()
		recs = append(recs, rec)
	}
	if err := r.Err(); err != nil {
		t.Fatalf("read ipc stream: %v", err)
	}
	tbl := array.NewTableFromRecords(r.Schema(), recs)
	for _, rec := range recs {
		rec.Release()
	}
	return tbl, len(recs)
}

// column concatenates the chunks of the named column.
func column(t *testing.T, tbl arrow.Table, name string) arrow.Array {
	t.Helper()
	idx := tbl.Schema().FieldIndices(name)
	if len(idx) != 1 {
		t.Fatalf("column %q: found %d times in %s", name, len(idx), tbl.Schema())
	}
	chunks := tbl.Column(idx[0]).Data().Chunks()
	if len(chunks) == 0 {
		b := array.NewBuilder(memory.DefaultAllocator, tbl.Schema().Field(idx[0]).Type)
		defer b.Release()
		return b.NewArray()
	}
	arr, err := array.Concatenate(chunks, memory.DefaultAllocator)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(arr.Release)
	return arr
}

func masteryColumn(t *testing.T, tbl arrow.Table) [][]float32 {
	t.Helper()
	arr := column(t, tbl, ColMastery).(*array.FixedSizeList)
	values := arr.ListValues().(*array.Float32)
	n := int(arr.DataType().(*arrow.FixedSizeListType).Len())
	out := make([][]float32, arr.Len())
	for i := range out {
		start, _ := arr.ValueOffsets(i)
		out[i] = values.Float32Values()[start : int(start)+n]
	}
	return out
}

// checkSchema compares names, types and metadata, ignoring the list
// element's name, which Parquet renames to "element".
func checkSchema(t *testing.T, got, want *arrow.Schema) {
	t.Helper()
	if got.NumFields() != want.NumFields() {
		t.Fatalf("schema has %d fields, want %d:\ngot  %s\nwant %s", got.NumFields(), want.NumFields(), got, want)
	}
	for i, w := range want.Fields() {
		g := got.Field(i)
		if g.Name != w.Name {
			t.Errorf("field %d is %q, want %q", i, g.Name, w.Name)
		}
		if wl, ok := w.Type.(*arrow.FixedSizeListType); ok {
			gl, ok := g.Type.(*arrow.FixedSizeListType)
			if !ok || gl.Len() != wl.Len() || !arrow.TypeEqual(gl.Elem(), wl.Elem()) {
				t.Errorf("field %q has type %s, want %s", w.Name, g.Type, w.Type)
			}
			continue
		}
		if !arrow.TypeEqual(g.Type, w.Type) {
			t.Errorf("field %q has type %s, want %s", w.Name, g.Type, w.Type)
		}
	}
	for _, key := range []string{MetaNumSkills, MetaModelVersion, MetaProducer} {
		wv, _ := want.Metadata().GetValue(key)
		if gv, ok := got.Metadata().GetValue(key); !ok || gv != wv {
			t.Errorf("schema metadata %q = %q (present %v), want %q", key, gv, ok, wv)
		}
	}
}

func checkMasteryTable(t *testing.T, tbl arrow.Table, cfg Config, rows []MasteryRow, scoredAt func(i int) time.Time) {
	t.Helper()
	checkSchema(t, tbl.Schema(), MasterySchema(cfg))
	if int(tbl.NumRows()) != len(rows) {
		t.Fatalf("read %d rows, want %d", tbl.NumRows(), len(rows))
	}
	ids := column(t, tbl, ColStudentID).(*array.String)
	seqLen := column(t, tbl, ColSeqLen).(*array.Int32)
	windowStart := column(t, tbl, ColWindowStart).(*array.Int32)
	version := column(t, tbl, ColModelVersion).(*array.String)
	scored := column(t, tbl, ColScoredAt).(*array.Timestamp)
	mastery := masteryColumn(t, tbl)
	for i, want := range rows {
		if got := ids.Value(i); got != want.StudentID {
			t.Errorf("row %d student_id = %q, want %q", i, got, want.StudentID)
		}
		if got := seqLen.Value(i); got != want.SeqLen {
			t.Errorf("row %d seq_len = %d, want %d", i, got, want.SeqLen)
		}
		if got := windowStart.Value(i); got != want.WindowStart {
			t.Errorf("row %d window_start = %d, want %d", i, got, want.WindowStart)
		}
		wantVersion := cfg.ModelVersion
		if want.ModelVersion != "" {
			wantVersion = want.ModelVersion
		}
		if got := version.Value(i); got != wantVersion {
			t.Errorf("row %d model_version = %q, want %q", i, got, wantVersion)
		}
		if got, w := scored.Value(i).ToTime(arrow.Microsecond), scoredAt(i); !got.Equal(w) {
			t.Errorf("row %d scored_at = %s, want %s", i, got, w)
		}
		if !equalFloat32s(mastery[i], want.Mastery) {
			t.Errorf("row %d mastery = %v, want %v", i, mastery[i], want.Mastery)
		}
	}
	if !cfg.WithSource {
		return
	}
	topic := column(t, tbl, ColSourceTopic).(*array.String)
	partition := column(t, tbl, ColSourcePartition).(*array.Int32)
	offset := column(t, tbl, ColSourceOffset).(*array.Int64)
	for i, want := range rows {
		if topic.Value(i) != want.SourceTopic || partition.Value(i) != want.SourcePartition || offset.Value(i) != want.SourceOffset {
			t.Errorf("row %d source = %s/%d/%d, want %s/%d/%d", i, topic.Value(i), partition.Value(i), offset.Value(i),
				want.SourceTopic, want.SourcePartition, want.SourceOffset)
		}
	}
}

func equalFloat32s(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func checkTrajectoryTable(t *testing.T, tbl arrow.Table, cfg Config, rows []StepRow) {
	t.Helper()
	checkSchema(t, tbl.Schema(), TrajectorySchema(cfg))
	if int(tbl.NumRows()) != len(rows) {
		t.Fatalf("read %d rows, want %d", tbl.NumRows(), len(rows))
	}
	ids := column(t, tbl, ColStudentID).(*array.String)
	step := column(t, tbl, ColStep).(*array.Int32)
	skill := column(t, tbl, ColSkillID).(*array.Int32)
	correct := column(t, tbl, ColCorrect).(*array.Int8)
	version := column(t, tbl, ColModelVersion).(*array.String)
	mastery := masteryColumn(t, tbl)
	for i, want := range rows {
		got := StepRow{StudentID: ids.Value(i), Step: step.Value(i), SkillID: skill.Value(i), Correct: correct.Value(i), Mastery: mastery[i]}
		if got.StudentID != want.StudentID || got.Step != want.Step || got.SkillID != want.SkillID ||
			got.Correct != want.Correct || !equalFloat32s(got.Mastery, want.Mastery) {
			t.Errorf("row %d = %+v, want %+v", i, got, want)
		}
		if v := version.Value(i); v != cfg.ModelVersion {
			t.Errorf("row %d model_version = %q, want %q", i, v, cfg.ModelVersion)
		}
	}
}
