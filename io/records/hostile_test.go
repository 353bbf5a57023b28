package records

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/parquet/file"
)

// TestLongCSVStudentWhole: a student with any unusable row is rejected
// whole, naming every bad line and every line of the student; broken quoting
// never yields a student; a row with more or fewer fields than the header is
// a reject naming the line and both counts.
func TestLongCSVStudentWhole(t *testing.T) {
	const head = "student_id,skill_id,correct\n"
	cases := []struct {
		name  string
		input string
		wants []want
	}{
		{"bad skill inside a student", head + "a,1,0\na,x,1\na,2,1\nb,3,1\n",
			[]want{bad(2, "a", `line 3: skill_id "x" is not an integer`), ok(5, "b", "[3]/[1]")}},
		{"every line is named", head + "a,1,0\na,x,1\na,2,1\na,3,7\nb,3,1\n",
			[]want{bad(2, "a", "2 bad rows in all, at lines 3, 5; so none of this student's 4 rows (lines 2-5) is scored"), ok(6, "b", "[3]/[1]")}},
		{"row without student_id inside a student", head + "a,1,0\n,2,1\na,3,1\nb,3,1\n",
			[]want{bad(2, "a", "line 3 has no student_id (column 1 of the header); fill it in or remove the row; so none of this student's 3 rows (lines 2-4) is scored"), ok(5, "b", "[3]/[1]")}},
		{"row without student_id between students", head + "a,1,0\n,2,1\nb,3,1\n",
			[]want{ok(2, "a", "[1]/[0]"), bad(3, "", "line 3 has no student_id"), ok(4, "b", "[3]/[1]")}},
		{"quoted field across lines inside a student", head + "a,1,0\na,\"x\ny\",1\na,3,1\nb,4,0\n",
			[]want{bad(2, "a", "lines 3-4: a quoted field opened on line 3 closes on line 4; fields spanning lines are not supported"), ok(6, "b", "[4]/[0]")}},
		{"quoted student id across lines invents nobody", head + "a,1,0\n\"b\nc\",2,1\nd,3,1\n",
			[]want{ok(2, "a", "[1]/[0]"), bad(3, "", "lines 3-4: a quoted field opened on line 3 closes on line 4"), ok(5, "d", "[3]/[1]")}},
		{"quote across three lines", head + "\"b\nc,1,1\nd\",2,1\ne,3,1\n",
			[]want{bad(2, "", "lines 2-4: a quoted field opened on line 2 closes on line 4"), ok(5, "e", "[3]/[1]")}},
		{"escaped quotes do not close", head + "a,\"x\n\"\"y\",1\nb,3,1\n",
			[]want{bad(2, "a", "lines 2-3"), ok(4, "b", "[3]/[1]")}},
		{"too many fields", head + "a,1,0,9\nb,3,1\n",
			[]want{bad(2, "a", "line 2 has 4 fields but the header has 3"), ok(3, "b", "[3]/[1]")}},
		{"too few fields inside a student", head + "a,1,0\na,1\na,2,1\nb,3,1\n",
			[]want{bad(2, "a", "line 3 has 2 fields but the header has 3; fix the row (a value holding a comma must be in double quotes); so none of this student's 3 rows (lines 2-4)"), ok(5, "b", "[3]/[1]")}},
		{"text after a closing quote", head + "a,1,0\na,\"2\"x,1\nb,3,1\n",
			[]want{bad(2, "a", "line 3: text \"x,1\" after a closing double quote"), ok(4, "b", "[3]/[1]")}},
		{"broken rows before any student", head + ",1,1\nb,3,1\n",
			[]want{bad(2, "", "line 2 has no student_id"), ok(3, "b", "[3]/[1]")}},
		{"orphan at the end", head + "a,1,0\n,2,1\n",
			[]want{ok(2, "a", "[1]/[0]"), bad(3, "", "line 3 has no student_id")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, outs := drain(t, readerFor(t, FormatCSV, c.input, smallSkillsOpt), smallSkillsOpt)
			checkOutcomes(t, outs, c.wants)
		})
	}
}

// TestDKT3BrokenRecords: the DKT 3-line analogues of the long-CSV cases:
// quoted values, a list broken over two lines, a list with an extra field.
// None of them yields a student; the records after them keep their ids.
func TestDKT3BrokenRecords(t *testing.T) {
	cases := []struct {
		name  string
		input string
		wants []want
	}{
		{"quoted values", "2\n\"1\",\"2\"\n0,1\n1\n4\n1\n",
			[]want{bad(1, "0", `skill id at index 0 is "\"1\"", not an integer`), ok(4, "1", "[4]/[1]")}},
		{"skill list broken over two lines", "3\n1,2,\n3,\n0,1,1,\n1\n4\n1\n",
			[]want{bad(1, "0", "line 2 has 2 skill ids but the count line says 3"), bad(4, "1", "expected the interaction count"), ok(5, "2", "[4]/[1]")}},
		{"one flag too many", "2\n1,2\n0,1,1\n1\n4\n1\n",
			[]want{bad(1, "0", "line 3 has 3 correctness flags but the count line says 2"), ok(4, "1", "[4]/[1]")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, outs := drain(t, readerFor(t, FormatDKT3, c.input, smallSkillsOpt), smallSkillsOpt)
			checkOutcomes(t, outs, c.wants)
		})
	}
}

// TestNumberSyntax: every text format accepts and rejects the same spellings
// of a skill id and a correctness flag (the rule is in values.go and README).
func TestNumberSyntax(t *testing.T) {
	cases := []struct {
		skill, correct string
		ok             bool
	}{
		{"2", "1", true},
		{"0", "0", true},
		{"007", "0", false},  // JSON cannot spell it, so no format takes it
		{" 2 ", " 1 ", true}, // spaces around a field are trimmed
		{"2.0", "1", false},
		{"1e0", "1", false},
		{"+1", "1", false},
		{"0x1", "1", false},
		{"0.9999999999999999999", "1", false},
		{"2", "1.0", false},
		{"2", "true", false},
		{"2", "+1", false},
		{"2", "0.9999999999999999999", false},
		{"2", "01", false},
		{"99999999999999999999", "1", false}, // beyond int64: out of range, not wrapped
		{"-1", "1", false},
	}
	for _, c := range cases {
		inputs := map[Format]string{
			FormatCSV:   fmt.Sprintf("student_id,skill_id,correct\ns,%s,%s\n", c.skill, c.correct),
			FormatDKT3:  fmt.Sprintf("1\n%s\n%s\n", c.skill, c.correct),
			FormatJSONL: fmt.Sprintf(`{"student_id":"s","skills":[%s],"correct":[%s]}`+"\n", c.skill, c.correct),
		}
		for format, in := range inputs {
			t.Run(fmt.Sprintf("%s/%q,%q", format, c.skill, c.correct), func(t *testing.T) {
				seqs, outs := drain(t, readerFor(t, format, in, smallSkillsOpt), smallSkillsOpt)
				if got := len(seqs) == 1; got != c.ok || len(outs) != 1 {
					t.Fatalf("skill %q correct %q: accepted=%v, want %v:\n%s", c.skill, c.correct, got, c.ok, render(outs))
				}
			})
		}
		ev := fmt.Sprintf(`{"student_id":"s","skill_id":%s,"correct":%s}`, c.skill, c.correct)
		if _, err := DecodeJSONEvent([]byte(ev), smallSkillsOpt); (err == nil) != c.ok {
			t.Errorf("event %s: err = %v, want accepted=%v", ev, err, c.ok)
		}
	}
	// JSON strings are not numbers, and a JSON boolean is not a flag.
	for _, in := range []string{`{"student_id":"s","skills":["2"],"correct":[1]}`, `{"student_id":"s","skills":[2],"correct":[true]}`, `{"student_id":1.0,"skills":[2],"correct":[1]}`, `{"student_id":99999999999999999999,"skills":[2],"correct":[1]}`} {
		if _, err := DecodeJSONSequence([]byte(in), smallSkillsOpt); err == nil {
			t.Errorf("%s accepted", in)
		}
	}
}

// TestSniffKeepsBytes: SniffFormat only peeks, so the decoder handed the same
// reader sees the first record; a name without an extension ("-" for stdin)
// is sniffed for every format.
func TestSniffKeepsBytes(t *testing.T) {
	for _, c := range []struct {
		name, data string
		want       Format
	}{
		{"-", "1\n4\n1\n", FormatDKT3},
		{"-", "\ufeffstudent_id,skill_id,correct\na,4,1\n", FormatCSV},
		{"-", `{"student_id":"a","skills":[4],"correct":[1]}` + "\n", FormatJSONL},
		{"pipe.txt", "1\n4\n1\n", FormatDKT3},
		{"noext", "student_id,skill_id,correct\na,4,1\n", FormatCSV},
	} {
		br := bufio.NewReaderSize(strings.NewReader(c.data), SniffBufferSize)
		got, err := SniffFormat(c.name, br)
		if err != nil || got != c.want {
			t.Fatalf("SniffFormat(%s, %q) = %q, %v; want %q", c.name, c.data, got, err, c.want)
		}
		r, err := NewReader(br, c.name, got, Options{NumSkills: smallSkillsOpt})
		if err != nil {
			t.Fatal(err)
		}
		seqs, outs := drain(t, r, smallSkillsOpt)
		if len(seqs) != 1 || len(outs) != 1 || fmtSC(seqs[0]) != "[4]/[1]" {
			t.Errorf("%s %q: %s", c.name, c.data, render(outs))
		}
	}
	if _, err := SniffFormat("-", bufio.NewReader(strings.NewReader("PAR1...."))); err != nil {
		t.Errorf("parquet magic on stdin: %v", err)
	}
	if _, err := SniffFormat("-", bufio.NewReader(strings.NewReader(""))); err == nil || !strings.Contains(err.Error(), "--input-format") {
		t.Errorf("empty stdin: %v", err)
	}
}

// TestOpenFIFO: a named pipe whose name ends in .csv is opened once, sniffed
// and decoded while a writer is still writing: nothing is read twice or lost.
// Parquet from a pipe is refused with the fix.
func TestOpenFIFO(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, data string }{
		{"in.csv", "student_id,skill_id,correct\na,1,0\na,2,1\nb,3,1\n"},
		{"in.txt", "2\n1,2\n0,1\n1\n3\n1\n"},
	} {
		path := filepath.Join(dir, c.name)
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				done <- err
				return
			}
			// Two writes: the sniffer must not wait for more than the first line.
			_, err = f.WriteString(c.data[:strings.IndexByte(c.data, '\n')+1])
			if err == nil {
				time.Sleep(10 * time.Millisecond)
				_, err = f.WriteString(c.data[strings.IndexByte(c.data, '\n')+1:])
			}
			done <- errorsJoin(err, f.Close())
		}()
		r, err := Open(path, "", Options{NumSkills: smallSkillsOpt})
		if err != nil {
			t.Fatal(err)
		}
		seqs, outs := drain(t, r, smallSkillsOpt)
		r.Close()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if len(seqs) != 2 || len(outs) != 2 {
			t.Errorf("%s: %s", c.name, render(outs))
		}
	}
	path := filepath.Join(dir, "in.parquet")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
	}()
	if _, err := Open(path, "", Options{NumSkills: smallSkillsOpt}); err == nil || !strings.Contains(err.Error(), "named pipe") || !strings.Contains(err.Error(), "regular file") {
		t.Errorf("parquet from a FIFO: %v", err)
	}
}

func errorsJoin(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// corruptRowGroup overwrites the last bytes of column col's chunk in row
// group rg, which lie inside its last data page, the way a bad disk block or
// a truncated copy would.
func corruptRowGroup(t testing.TB, data []byte, rg, col int) []byte {
	t.Helper()
	pf, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := pf.MetaData().RowGroup(rg).ColumnChunk(col)
	if err != nil {
		t.Fatal(err)
	}
	end := cc.DataPageOffset() + cc.TotalCompressedSize()
	if dict := cc.DictionaryPageOffset(); dict > 0 && dict < cc.DataPageOffset() {
		end = dict + cc.TotalCompressedSize()
	}
	out := bytes.Clone(data)
	for i := end - 24; i < end; i++ {
		out[i] ^= 0xA5
	}
	return out
}

// TestParquetCorruptMiddle: a damaged page in a middle row group stops the
// reader with an error naming the row group and its rows; every student
// decided before it is handed out first, the one being read is not.
func TestParquetCorruptMiddle(t *testing.T) {
	var rows []pqRow
	for s := 0; s < 30; s++ {
		for k := 0; k < 100; k++ {
			rows = append(rows, pqRow{student: fmt.Sprintf("s%02d", s), skill: int64(k % 10), correct: int64(k % 2)})
		}
	}
	data := corruptRowGroup(t, parquetBytes(t, rows, pqLayout{rowGroupLen: 1000, snappy: true}), 1, 1)
	r, err := newParquetReader(bytes.NewReader(data), "in.parquet", Options{NumSkills: smallSkillsOpt}, 256)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var scored int
	for {
		_, err := r.Next()
		if err == nil {
			scored++
			continue
		}
		if err == io.EOF {
			t.Fatal("a damaged row group read to the end without an error")
		}
		for _, w := range []string{"in.parquet", "row group 1 of 3 (rows 1001-2000)", "rows 1-1000 before it were read", "the student whose rows start at row 901 was being read and is not scored", "re-export"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q lacks %q", err, w)
			}
		}
		break
	}
	// Students s00..s08 are complete; s09's last row is the row group's last,
	// but the next row group might have continued it.
	if scored != 9 {
		t.Errorf("handed out %d students before the error, want 9", scored)
	}

	// On a file of one small row group the position is the row group, not
	// "after row 0".
	small := corruptRowGroup(t, parquetBytes(t, rows[:50], pqLayout{snappy: true}), 0, 1)
	r, err = newParquetReader(bytes.NewReader(small), "small.parquet", Options{NumSkills: smallSkillsOpt}, 256)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = r.Next()
	if err == nil || err == io.EOF || !strings.Contains(err.Error(), "row group 0 of 1 (rows 1-50)") || !strings.Contains(err.Error(), "no row before it was read") {
		t.Errorf("small file: %v", err)
	}
}
