package columnar

import (
	"errors"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

func TestEncodeEventIPCStream(t *testing.T) {
	cfg, mem := testConfig(t, "", true)
	rows := []EventRow{
		{StudentID: "s1", EventOffset: 10, SkillID: 3, Correct: 1, Events: 1, Mastery: []float32{0, 0.25, 0.5, 0.75, 1},
			SourceTopic: "in", SourcePartition: 2, SourceOffset: 10},
		{StudentID: "s2", EventOffset: 11, SkillID: 4, Correct: 0, Events: 7, Mastery: []float32{0.1, 0.2, 0.3, 0.4, 0.5},
			SourceTopic: "in", SourcePartition: 2, SourceOffset: 11},
	}
	at := clockStart
	data, err := EncodeEventIPCStream(cfg, rows, at)
	if err != nil {
		t.Fatal(err)
	}
	mem.AssertSize(t, 0)
	tbl, batches := readStream(t, data)
	defer tbl.Release()
	if batches != 1 || tbl.NumRows() != 2 {
		t.Fatalf("stream has %d batches, %d rows; want 1 batch of 2 rows", batches, tbl.NumRows())
	}
	if !tbl.Schema().Equal(EventSchema(cfg)) {
		t.Fatalf("schema %v, want %v", tbl.Schema(), EventSchema(cfg))
	}
	col := func(name string) arrow.Array {
		i := tbl.Schema().FieldIndices(name)[0]
		return tbl.Column(i).Data().Chunk(0)
	}
	for i, r := range rows {
		if got := col(ColStudentID).(*array.String).Value(i); got != r.StudentID {
			t.Errorf("row %d student_id %q, want %q", i, got, r.StudentID)
		}
		if got := col(ColEventOffset).(*array.Int64).Value(i); got != r.EventOffset {
			t.Errorf("row %d event_offset %d, want %d", i, got, r.EventOffset)
		}
		if got := col(ColSkillID).(*array.Int32).Value(i); got != r.SkillID {
			t.Errorf("row %d skill_id %d, want %d", i, got, r.SkillID)
		}
		if got := col(ColCorrect).(*array.Int8).Value(i); got != r.Correct {
			t.Errorf("row %d correct %d, want %d", i, got, r.Correct)
		}
		if got := col(ColEvents).(*array.Int64).Value(i); got != r.Events {
			t.Errorf("row %d events %d, want %d", i, got, r.Events)
		}
		values := col(ColMastery).(*array.FixedSizeList).ListValues().(*array.Float32).Float32Values()
		for k, want := range r.Mastery {
			if got := values[i*cfg.NumSkills+k]; got != want {
				t.Errorf("row %d mastery[%d] = %v, want %v", i, k, got, want)
			}
		}
		if got := col(ColModelVersion).(*array.String).Value(i); got != cfg.ModelVersion {
			t.Errorf("row %d model_version %q", i, got)
		}
		if got := col(ColScoredAt).(*array.Timestamp).Value(i).ToTime(arrow.Microsecond); !got.Equal(at) {
			t.Errorf("row %d scored_at %v, want %v", i, got, at)
		}
		if got := col(ColSourcePartition).(*array.Int32).Value(i); got != r.SourcePartition {
			t.Errorf("row %d source_partition %d", i, got)
		}
		if got := col(ColSourceOffset).(*array.Int64).Value(i); got != r.SourceOffset {
			t.Errorf("row %d source_offset %d", i, got)
		}
	}
}

func TestEncodeEventIPCStreamRejectsBadRows(t *testing.T) {
	cfg, _ := testConfig(t, "", true)
	ok := EventRow{StudentID: "s", Mastery: make([]float32, cfg.NumSkills)}
	for name, mutate := range map[string]func(*EventRow){
		"short mastery": func(r *EventRow) { r.Mastery = r.Mastery[:2] },
		"correct 2":     func(r *EventRow) { r.Correct = 2 },
		"bad utf-8":     func(r *EventRow) { r.StudentID = "\xff" },
	} {
		t.Run(name, func(t *testing.T) {
			r := ok
			mutate(&r)
			if _, err := EncodeEventIPCStream(cfg, []EventRow{r}, time.Now()); !errors.Is(err, ErrBadRow) {
				t.Fatalf("err = %v, want ErrBadRow", err)
			}
		})
	}
}
