package records

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

const (
	realDKT3       = "../../data/assistments/builder_test.csv"
	assistSkills   = 124
	smallSkillsOpt = 10
)

var assistOpts = Options{NumSkills: assistSkills}

// outcome is one result of Next, flattened for table comparisons.
type outcome struct {
	ok      bool
	line    int
	record  int
	student string
	reason  string // reject reason; for ok, "skills/correct"
}

func (o outcome) String() string {
	if o.ok {
		return fmt.Sprintf("ok line=%d rec=%d student=%s %s", o.line, o.record, o.student, o.reason)
	}
	return fmt.Sprintf("reject line=%d rec=%d student=%s: %s", o.line, o.record, o.student, o.reason)
}

// drain reads r to the end; a fatal error fails the test. Every sequence must
// pass Validate and every reject must carry a reason and a kind.
func drain(t testing.TB, r Reader, numSkills int) ([]Sequence, []outcome) {
	t.Helper()
	var seqs []Sequence
	var outs []outcome
	for {
		seq, err := r.Next()
		if err == io.EOF {
			return seqs, outs
		}
		var rej *RejectError
		switch {
		case errors.As(err, &rej):
			if rej.Reason == "" || !rej.Kind.Valid() {
				t.Fatalf("reject without a reason or a kind: %+v", rej)
			}
			// A reason is for the user: no Go identifiers, no gaps left by an
			// empty part.
			if strings.Contains(rej.Reason, "  ") || strings.Contains(rej.Reason, "Options.") {
				t.Errorf("reject reason has a double space or names a Go identifier: %q", rej.Reason)
			}
			outs = append(outs, outcome{line: rej.Line, record: rej.Record, student: rej.StudentID, reason: rej.Reason})
		case err != nil:
			t.Fatalf("fatal error: %v", err)
		default:
			if verr := Validate(seq, numSkills); verr != nil {
				t.Fatalf("Next returned an invalid sequence %+v: %v", seq, verr)
			}
			seqs = append(seqs, seq)
			outs = append(outs, outcome{ok: true, line: seq.Line, record: seq.Record, student: seq.StudentID, reason: fmtSC(seq)})
		}
	}
}

// want is an expected outcome: reason is a substring for rejects and the
// exact "skills/correct" rendering for sequences.
type want struct {
	ok      bool
	line    int
	student string
	reason  string
}

func ok(line int, student, sc string) want {
	return want{ok: true, line: line, student: student, reason: sc}
}
func bad(line int, student, why string) want { return want{line: line, student: student, reason: why} }

func checkOutcomes(t *testing.T, got []outcome, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("got %d outcomes, want %d:\n%s", len(got), len(wants), render(got))
	}
	for i, w := range wants {
		g := got[i]
		match := g.ok == w.ok && g.line == w.line && g.student == w.student
		if w.ok {
			match = match && g.reason == w.reason
		} else {
			match = match && strings.Contains(g.reason, w.reason)
		}
		if !match {
			t.Errorf("outcome %d = %s\nwant %+v", i, g, w)
		}
	}
}

func render(outs []outcome) string {
	var b strings.Builder
	for _, o := range outs {
		b.WriteString(o.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func readerFor(t testing.TB, format Format, input string, numSkills int) Reader {
	t.Helper()
	r, err := NewReader(strings.NewReader(input), "in", format, Options{NumSkills: numSkills})
	if err != nil {
		t.Fatalf("NewReader: %v", err)
	}
	return r
}

// realStudents decodes the first n students of the bundled dkt3 file.
func realStudents(t testing.TB, n int) []Sequence {
	t.Helper()
	r, err := Open(realDKT3, FormatDKT3, assistOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []Sequence
	for len(out) < n {
		seq, err := r.Next()
		if err != nil {
			t.Fatalf("record %d: %v", len(out), err)
		}
		out = append(out, seq)
	}
	return out
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// longCSV renders seqs in the long layout with the columns in a non-default
// order and an extra column; with timestamps, rows are written newest first
// so that only timestamp ordering restores the sequence.
func longCSV(seqs []Sequence, withTS bool) []byte {
	var b bytes.Buffer
	if withTS {
		b.WriteString("timestamp,correct,extra,student_id,skill_id\r\n")
	} else {
		b.WriteString("correct,extra,student_id,skill_id\n")
	}
	for _, s := range seqs {
		for k := range s.Skills {
			i := k
			if withTS {
				i = len(s.Skills) - 1 - k
				fmt.Fprintf(&b, "%d,", 1_600_000_000+i)
			}
			fmt.Fprintf(&b, "%d,\"x,y\",%s,%d\n", s.Correct[i], s.StudentID, s.Skills[i])
		}
	}
	return b.Bytes()
}

func jsonLines(t testing.TB, seqs []Sequence) []byte {
	var b bytes.Buffer
	for i, s := range seqs {
		rec := map[string]any{"skills": s.Skills, "correct": s.Correct, "extra": []string{"ignored"}}
		if i%2 == 0 {
			rec["student_id"] = s.StudentID
		} else {
			var n json.Number = json.Number(s.StudentID)
			rec["student_id"] = n
		}
		line, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(line)
		b.WriteByte('\n')
		if i%7 == 0 {
			b.WriteString("\n") // blank lines are skipped
		}
	}
	return b.Bytes()
}

// pqRow is one row of a test Parquet file.
type pqRow struct {
	student string
	skill   int64
	correct int64
	ts      *int64 // nil: null timestamp
}

type pqLayout struct {
	intStudent  bool // student_id as int64 (ids must be numeric)
	boolCorrect bool
	timestamp   bool // add a timestamp[ms] column
	rowGroupLen int64
	snappy      bool // compress pages, so that flipped bytes fail to decode
}

// parquetBytes writes rows as a Parquet file in the long layout.
func parquetBytes(t testing.TB, rows []pqRow, lay pqLayout) []byte {
	t.Helper()
	var fields []arrow.Field
	if lay.intStudent {
		fields = append(fields, arrow.Field{Name: "student_id", Type: arrow.PrimitiveTypes.Int64})
	} else {
		fields = append(fields, arrow.Field{Name: "student_id", Type: arrow.BinaryTypes.String})
	}
	fields = append(fields, arrow.Field{Name: "skill_id", Type: arrow.PrimitiveTypes.Int32})
	if lay.boolCorrect {
		fields = append(fields, arrow.Field{Name: "correct", Type: arrow.FixedWidthTypes.Boolean})
	} else {
		fields = append(fields, arrow.Field{Name: "correct", Type: arrow.PrimitiveTypes.Int8})
	}
	if lay.timestamp {
		fields = append(fields, arrow.Field{Name: "timestamp", Type: &arrow.TimestampType{Unit: arrow.Millisecond}, Nullable: true})
	}
	schema := arrow.NewSchema(fields, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, r := range rows {
		if lay.intStudent {
			var v int64
			fmt.Sscan(r.student, &v)
			b.Field(0).(*array.Int64Builder).Append(v)
		} else {
			b.Field(0).(*array.StringBuilder).Append(r.student)
		}
		b.Field(1).(*array.Int32Builder).Append(int32(r.skill))
		if lay.boolCorrect {
			b.Field(2).(*array.BooleanBuilder).Append(r.correct == 1)
		} else {
			b.Field(2).(*array.Int8Builder).Append(int8(r.correct))
		}
		if lay.timestamp {
			if r.ts == nil {
				b.Field(3).AppendNull()
			} else {
				b.Field(3).(*array.TimestampBuilder).Append(arrow.Timestamp(*r.ts))
			}
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	rgLen := lay.rowGroupLen
	if rgLen == 0 {
		rgLen = 1 << 20
	}
	codec := compress.Codecs.Uncompressed
	if lay.snappy {
		codec = compress.Codecs.Snappy
	}
	var out bytes.Buffer
	w, err := pqarrow.NewFileWriter(schema, &out, parquet.NewWriterProperties(parquet.WithMaxRowGroupLength(rgLen), parquet.WithCompression(codec)), pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func seqRows(seqs []Sequence) []pqRow {
	var rows []pqRow
	for _, s := range seqs {
		for i := range s.Skills {
			rows = append(rows, pqRow{student: s.StudentID, skill: int64(s.Skills[i]), correct: int64(s.Correct[i])})
		}
	}
	return rows
}

func sameSequences(t *testing.T, label string, got, want []Sequence) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d sequences, want %d", label, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.StudentID != w.StudentID || fmt.Sprint(g.Skills) != fmt.Sprint(w.Skills) || fmt.Sprint(g.Correct) != fmt.Sprint(w.Correct) || g.Record != w.Record {
			t.Fatalf("%s: sequence %d = %+v\nwant %+v", label, i, g, w)
		}
	}
}

func fmtSC(s Sequence) string { return fmt.Sprint(s.Skills) + "/" + fmt.Sprint(s.Correct) }
