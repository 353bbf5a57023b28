package records

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDKT3RealFile(t *testing.T) {
	r, err := Open(realDKT3, "", assistOpts) // "" detects dkt3 from the first line
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	seqs, outs := drain(t, r, assistSkills)
	if len(outs) != len(seqs) {
		t.Fatalf("%d rejects in the real file:\n%s", len(outs)-len(seqs), render(outs))
	}
	total := 0
	for i, s := range seqs {
		total += s.Len()
		if s.Record != i || s.StudentID != itoa(i) || s.Line != 3*i+1 {
			t.Fatalf("sequence %d has record %d, student %q, line %d", i, s.Record, s.StudentID, s.Line)
		}
	}
	if len(seqs) != 856 || total != 117567 {
		t.Fatalf("got %d students, %d interactions; want 856, 117567", len(seqs), total)
	}
	if got := outcomeOf(seqs[0]); got != "[51 51 51 51]/[0 1 1 1]" {
		t.Fatalf("first student %s", got)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func outcomeOf(s Sequence) string { return outcome{ok: true, reason: fmtSC(s)}.reason }

// TestFormatsAgree writes the first 50 real students in every layout and
// expects the dkt3 decode back.
func TestFormatsAgree(t *testing.T) {
	want := realStudents(t, 50)
	files := map[string]struct {
		format Format
		data   []byte
		batch  int64
	}{
		"long.csv":               {FormatCSV, longCSV(want, false), 0},
		"long_ts.csv":            {FormatCSV, longCSV(want, true), 0},
		"seqs.jsonl":             {FormatJSONL, jsonLines(t, want), 0},
		"str.parquet":            {FormatParquet, parquetBytes(t, seqRows(want), pqLayout{}), 0},
		"int_bool_small.parquet": {FormatParquet, parquetBytes(t, seqRows(want), pqLayout{intStudent: true, boolCorrect: true, rowGroupLen: 100}), 7},
	}
	for name, f := range files {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, name, f.data)
			if name != "int_bool_small.parquet" {
				if got, err := DetectFormat(path); err != nil || got != f.format {
					t.Fatalf("DetectFormat = %q, %v; want %q", got, err, f.format)
				}
			}
			var r Reader
			var err error
			if f.batch > 0 { // tiny batches: students span batch and row-group boundaries
				fh, ferr := os.Open(path)
				if ferr != nil {
					t.Fatal(ferr)
				}
				defer fh.Close()
				r, err = newParquetReader(fh, path, assistOpts, f.batch)
			} else {
				r, err = Open(path, f.format, assistOpts)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, outs := drain(t, r, assistSkills)
			if len(outs) != len(got) {
				t.Fatalf("rejects:\n%s", render(outs))
			}
			sameSequences(t, name, got, want)
		})
	}
}

func TestDKT3Rejects(t *testing.T) {
	cases := []struct {
		name  string
		input string
		wants []want
	}{
		{"crlf, no trailing comma, blank lines", "\r\n2\r\n1,2\r\n0,1\r\n\r\n1\r\n3\r\n1\r\n\r\n\r\n",
			[]want{ok(2, "0", "[1 2]/[0 1]"), ok(6, "1", "[3]/[1]")}},
		{"skill out of range", "2\n1,10,\n0,1,\n1\n4,\n1,\n",
			[]want{bad(1, "0", "skill id 10 at index 1 is outside [0,10)"), ok(4, "1", "[4]/[1]")}},
		{"correct not 0/1", "2\n1,2,\n0,2,\n1\n4,\n1,\n",
			[]want{bad(1, "0", "correct flag at index 1 is \"2\"; it must be 0 or 1"), ok(4, "1", "[4]/[1]")}},
		{"length mismatch", "3\n1,2,\n0,1,\n1\n4,\n1,\n",
			[]want{bad(1, "0", "line 2 has 2 skill ids but the count line says 3"), ok(4, "1", "[4]/[1]")}},
		{"flags shorter than skills", "2\n1,2,\n0,\n1\n4,\n1,\n",
			[]want{bad(1, "0", "line 3 has 1 correctness flags but the count line says 2"), ok(4, "1", "[4]/[1]")}},
		{"empty", "0\n\n\n1\n4,\n1,\n",
			[]want{bad(1, "0", "empty sequence"), ok(4, "1", "[4]/[1]")}},
		{"non-integer value", "2\n1,x,\n0,1,\n1\n4,\n1,\n",
			[]want{bad(1, "0", "line 2: skill id at index 1 is \"x\", not an integer"), ok(4, "1", "[4]/[1]")}},
		{"unparsable count line consumes the damaged region", "abc\n1,2,\n0,1,\n1\n4,\n1,\n",
			[]want{bad(1, "0", "expected the interaction count (a bare non-negative integer) at line 1, got \"abc\"; skipped lines 1-3"), ok(4, "1", "[4]/[1]")}},
		{"junk line between records", "1\n4,\n1,\nnot a count\n1\n5,\n0,\n",
			[]want{ok(1, "0", "[4]/[1]"), bad(4, "1", "skipped line 4"), ok(5, "2", "[5]/[0]")}},
		{"missing flag line", "2\n1,2,\n1\n4,\n1,\n",
			[]want{bad(1, "0", "truncated record: line 3 should hold 2 correctness flags"), ok(3, "1", "[4]/[1]")}},
		{"truncated at end", "1\n4,\n1,\n2\n1,2,\n",
			[]want{ok(1, "0", "[4]/[1]"), bad(4, "1", "truncated record: the input ends before its correctness flags line")}},
		{"negative count", "-1\n4,\n1,\n1\n4,\n1,\n",
			[]want{bad(1, "0", "got \"-1\""), ok(4, "1", "[4]/[1]")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, outs := drain(t, readerFor(t, FormatDKT3, c.input, smallSkillsOpt), smallSkillsOpt)
			checkOutcomes(t, outs, c.wants)
		})
	}
}

func TestCSVRejects(t *testing.T) {
	const head = "student_id,skill_id,correct\n"
	cases := []struct {
		name  string
		input string
		wants []want
	}{
		{"good, quoted ids, crlf, blank lines", head + "\"a\",1,0\r\n\"a\",2,1\r\n\r\nb,3,1\n",
			[]want{ok(2, "a", "[1 2]/[0 1]"), ok(5, "b", "[3]/[1]")}},
		{"skill out of range", head + "a,1,0\na,10,1\nb,3,1\n",
			[]want{bad(2, "a", "line 3: skill id 10 is outside [0,10)"), ok(4, "b", "[3]/[1]")}},
		{"correct not 0/1", head + "a,1,0\na,2,7\nb,3,1\n",
			[]want{bad(2, "a", "line 3: correct \"7\" must be 0 or 1"), ok(4, "b", "[3]/[1]")}},
		{"short row", head + "a,1\nb,3,1\n",
			[]want{bad(2, "a", "line 2 has 2 fields but the header has 3"), ok(3, "b", "[3]/[1]")}},
		{"missing student id", head + ",1,1\nb,3,1\n",
			[]want{bad(2, "", "line 2 has no student_id"), ok(3, "b", "[3]/[1]")}},
		{"a quote that never closes takes the rest", head + "a,1,1\n\"a,1,1\nb,3,1\n",
			[]want{ok(2, "a", "[1]/[1]"), bad(3, "", "lines 3-4: the double quote opened on line 3 never closes")}},
		{"non-contiguous student", head + "a,1,0\nb,3,1\na,2,1\na,4,1\nc,5,0\n",
			[]want{ok(2, "a", "[1]/[0]"), ok(3, "b", "[3]/[1]"), bad(4, "a", "reappears at line 4 after other students (first seen at line 2, record 0); its 2 row(s) here are not scored: rows of one student must be contiguous, so sort the input by student_id with a stable sort"), ok(6, "c", "[5]/[0]")}},
		{"bad timestamp", "student_id,skill_id,correct,timestamp\na,1,0,5\na,2,1,yesterday\nb,3,1,1\n",
			[]want{bad(2, "a", "line 3: timestamp \"yesterday\" is not an integer/float epoch or an RFC3339 time"), ok(4, "b", "[3]/[1]")}},
		{"mixed timestamp forms", "student_id,skill_id,correct,timestamp\na,1,0,5\na,2,1,2020-01-01T00:00:00Z\nb,3,1,1\n",
			[]want{bad(2, "a", "mix numeric epochs and calendar times"), ok(4, "b", "[3]/[1]")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, outs := drain(t, readerFor(t, FormatCSV, c.input, smallSkillsOpt), smallSkillsOpt)
			checkOutcomes(t, outs, c.wants)
		})
	}
}

func TestCSVHeaderErrors(t *testing.T) {
	for _, in := range []string{"", "\n\n", "student,skill_id,correct\n", "3\n1,2,3,\n0,1,1,\n"} {
		_, err := NewReader(strings.NewReader(in), "in.csv", FormatCSV, Options{NumSkills: 10})
		if err == nil || !strings.Contains(err.Error(), "in.csv") {
			t.Errorf("header %q: err = %v, want an error naming the input", in, err)
		}
	}
}

func TestCSVTimestampOrder(t *testing.T) {
	in := "skill_id,timestamp,student_id,correct\n" +
		"3,2020-01-01T00:00:03Z,a,1\n" +
		"1,2020-01-01T00:00:01Z,a,0\n" +
		"2,2020-01-01T00:00:01Z,a,1\n" + // tie with the row above: file order kept
		"5,1.5,b,0\n4,1,b,1\n6,1700000000000,b,1\n"
	_, outs := drain(t, readerFor(t, FormatCSV, in, smallSkillsOpt), smallSkillsOpt)
	checkOutcomes(t, outs, []want{ok(2, "a", "[1 2 3]/[0 1 1]"), ok(5, "b", "[4 5 6]/[1 0 1]")})
}

func TestJSONLRejects(t *testing.T) {
	in := `{"student_id":"a","skills":[1,2],"correct":[0,1]}
{"student_id":"b","skills":[1,10],"correct":[0,1]}
{"student_id":"c","skills":[1,2],"correct":[0,2]}
{"student_id":7,"skills":[1,2],"correct":[0]}
{"student_id":"e","skills":[],"correct":[]}
{"student_id":"f","skills":[1
{"skills":[1],"correct":[1]}
{"student_id":1.5,"skills":[1],"correct":[1]}
{"student_id":"i","skills":[1.5],"correct":[1]}

{"student_id":12,"skills":[3],"correct":[1],"other":{"x":1}}
`
	_, outs := drain(t, readerFor(t, FormatJSONL, in, smallSkillsOpt), smallSkillsOpt)
	checkOutcomes(t, outs, []want{
		ok(1, "a", "[1 2]/[0 1]"),
		bad(2, "b", "skill id 10 at index 1 is outside [0,10)"),
		bad(3, "c", "correct[1] is \"2\"; it must be 0 or 1"),
		bad(4, "7", "length mismatch: 2 skills but 1 correct flags"),
		bad(5, "e", "empty sequence"),
		bad(6, "", "not a JSON record"),
		bad(7, "", "student_id is missing"),
		bad(8, "", "student_id \"1.5\" must be a string or an integer"),
		bad(9, "i", "skills[0] is \"1.5\", not an integer"),
		ok(11, "12", "[3]/[1]"),
	})
}

func TestDecodeJSONSequence(t *testing.T) {
	seq, err := DecodeJSONSequence([]byte(`{"student_id": 42, "skills": [5], "correct": [0]}`), 10)
	if err != nil || seq.StudentID != "42" || seq.Len() != 1 {
		t.Fatalf("got %+v, %v", seq, err)
	}
	_, err = DecodeJSONSequence([]byte(`{"student_id": "s", "skills": [50], "correct": [0]}`), 10)
	var rej *RejectError
	if !errors.As(err, &rej) || rej.StudentID != "s" || rej.Record != -1 || rej.Kind != RejectSkillRange || !strings.HasPrefix(err.Error(), "student s: skill id 50") {
		t.Fatalf("got %v (%+v)", err, rej)
	}
}

func TestParquet(t *testing.T) {
	ts := func(v int64) *int64 { return &v }
	cases := []struct {
		name  string
		rows  []pqRow
		lay   pqLayout
		wants []want
	}{
		{"timestamp order", []pqRow{
			{"a", 3, 1, ts(30)}, {"a", 1, 0, ts(10)}, {"a", 2, 1, ts(10)},
			{"b", 4, 1, ts(5)},
		}, pqLayout{timestamp: true, rowGroupLen: 2}, []want{ok(0, "a", "[1 2 3]/[0 1 1]"), ok(0, "b", "[4]/[1]")}},
		{"rejects", []pqRow{
			{"a", 1, 0, ts(1)}, {"a", 12, 1, ts(2)},
			{"b", 1, 3, ts(1)},
			{"c", 1, 1, nil},
			{"", 1, 1, ts(1)},
			{"d", 1, 1, ts(1)},
			{"a", 1, 1, ts(1)},
			{"e", 2, 0, ts(1)},
		}, pqLayout{timestamp: true}, []want{
			bad(0, "a", "row 2: skill id 12 is outside [0,10)"),
			bad(0, "b", "row 3: correct \"3\" must be 0 or 1"),
			bad(0, "c", "row 4: timestamp null"),
			bad(0, "", "row 5 has no student_id"), // between two students: rejected on its own, in input order
			ok(0, "d", "[1]/[1]"),
			bad(0, "a", "reappears at row 7 after other students (first seen at row 1, record 0)"),
			ok(0, "e", "[2]/[0]"),
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := parquetBytes(t, c.rows, c.lay)
			r, err := newParquetReader(bytes.NewReader(data), "in.parquet", Options{NumSkills: smallSkillsOpt}, 2)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			_, outs := drain(t, r, smallSkillsOpt)
			checkOutcomes(t, outs, c.wants)
		})
	}
}

func TestUnreadableInputs(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "nope.csv")
	notParquet := writeFile(t, "x.parquet", []byte("this is not parquet"))
	for _, c := range []struct {
		path   string
		format Format
	}{{missing, FormatDKT3}, {missing, ""}, {dir, FormatCSV}, {notParquet, FormatParquet}, {filepath.Join(dir, "a.bin"), ""}} {
		r, err := Open(c.path, c.format, assistOpts)
		if err == nil {
			r.Close()
			t.Errorf("Open(%s, %q) succeeded", c.path, c.format)
			continue
		}
		if !strings.Contains(err.Error(), c.path) {
			t.Errorf("Open(%s, %q): error %q does not name the path", c.path, c.format, err)
		}
	}
	if _, err := Open(missing, FormatDKT3, assistOpts); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v does not match os.ErrNotExist", err)
	}
	if _, err := NewReader(io.MultiReader(strings.NewReader("x")), "stdin", FormatParquet, assistOpts); err == nil || !strings.Contains(err.Error(), "random access") {
		t.Errorf("parquet from a stream: %v", err)
	}
	if _, err := NewReader(strings.NewReader(""), "in", FormatDKT3, Options{}); err == nil || !strings.Contains(err.Error(), "NumSkills") {
		t.Errorf("zero NumSkills: %v", err)
	}
	if _, err := NewReader(iotestErrReader{}, "broken", FormatJSONL, assistOpts); err == nil || !strings.Contains(err.Error(), "broken") {
		t.Errorf("read error: %v", err)
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestFormatNames(t *testing.T) {
	for in, want := range map[string]Format{"dkt3": FormatDKT3, " CSV": FormatCSV, "ndjson": FormatJSONL, "parquet": FormatParquet} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("xml"); err == nil || !strings.Contains(err.Error(), "dkt3, csv, jsonl or parquet") {
		t.Errorf("ParseFormat(xml): %v", err)
	}
	for name, c := range map[string]struct {
		data string
		want Format
	}{
		"a.jsonl": {"", FormatJSONL}, "b.PQ": {"", FormatParquet},
		"c.csv": {"\ufeffskill_id,Student_ID,correct\n", FormatCSV}, "d.txt": {"12\r\n", FormatDKT3},
	} {
		if got, err := DetectFormat(writeFile(t, name, []byte(c.data))); err != nil || got != c.want {
			t.Errorf("DetectFormat(%s) = %q, %v; want %q", name, got, err, c.want)
		}
	}
	p := writeFile(t, "e.csv", []byte("user,skill\n"))
	if _, err := DetectFormat(p); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "--input-format") {
		t.Errorf("ambiguous csv: %v", err)
	}
}

func TestLongLines(t *testing.T) {
	long := strings.Repeat("1,", 100)
	in := "100\n" + long + "\n" + strings.Repeat("0,", 100) + "\n1\n4,\n1,\n"
	r, err := NewReader(strings.NewReader(in), "in", FormatDKT3, Options{NumSkills: 10, MaxLineBytes: 50})
	if err != nil {
		t.Fatal(err)
	}
	_, outs := drain(t, r, 10)
	checkOutcomes(t, outs, []want{bad(1, "0", "line 2 is longer than the 50 bytes limit on one line; such a line is usually a file without line breaks"), ok(4, "1", "[4]/[1]")})
	// Long lines within the limit are read whole, across bufio's buffer size.
	n := 200_000
	in = itoa(n) + "\n" + strings.Repeat("3,", n) + "\n" + strings.Repeat("1,", n) + "\n"
	seqs, _ := drain(t, readerFor(t, FormatDKT3, in, 10), 10)
	if len(seqs) != 1 || seqs[0].Len() != n {
		t.Fatalf("long record not read whole")
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		seq  Sequence
		want string
	}{
		{Sequence{Skills: []int32{1}, Correct: []int8{1}}, ""},
		{Sequence{}, "empty sequence"},
		{Sequence{Skills: []int32{1, 2}, Correct: []int8{1}}, "2 skill ids but 1 correctness flags"},
		{Sequence{Skills: []int32{1, -1}, Correct: []int8{1, 0}}, "skill id -1 at index 1 is outside [0,10)"},
		{Sequence{Skills: []int32{1, 10}, Correct: []int8{1, 0}}, "skill id 10 at index 1 is outside [0,10)"},
		{Sequence{Skills: []int32{1, 2}, Correct: []int8{1, 5}}, "correct flag 5 at index 1 must be 0 or 1"},
	}
	for _, c := range cases {
		err := Validate(c.seq, 10)
		if (c.want == "") != (err == nil) || (err != nil && (!strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalid))) {
			t.Errorf("Validate(%+v) = %v, want %q", c.seq, err, c.want)
		}
	}
}

func TestRejectLog(t *testing.T) {
	var buf bytes.Buffer
	log := NewRejectLog(&buf)
	rejs := []*RejectError{
		{Input: "f.csv", Line: 3, Record: 1, StudentID: "s<1>", Reason: "bad"},
		{Input: "f.parquet", Record: 2, Reason: "worse"},
	}
	for _, e := range rejs {
		if err := log.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	want := `{"input":"f.csv","line":3,"record":1,"student_id":"s<1>","reason":"bad"}` + "\n" +
		`{"input":"f.parquet","line":0,"record":2,"student_id":"","reason":"worse"}` + "\n"
	if buf.String() != want {
		t.Fatalf("log:\n%s\nwant:\n%s", buf.String(), want)
	}
	if got := rejs[0].Error(); got != "f.csv:3: record 1 (student s<1>): bad" {
		t.Fatalf("Error() = %q", got)
	}
	if got := rejs[1].Error(); got != "f.parquet: record 2: worse" {
		t.Fatalf("Error() = %q", got)
	}
	if err := NewRejectLog(failWriter{}).Write(rejs[0]); err == nil {
		t.Fatal("write error not reported")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, io.ErrClosedPipe }

func TestJSONRejectsInvalidUTF8(t *testing.T) {
	_, err := DecodeJSONSequence([]byte("{\"student_id\": \"\xff\xfe\", \"skills\": [1], \"correct\": [1]}"), 124)
	var reject *RejectError
	if !errors.As(err, &reject) || reject.Kind != RejectNotUTF8 || !strings.Contains(reject.Reason, "not valid UTF-8 (first bad byte at offset 16)") {
		t.Fatalf("invalid UTF-8 gave %v, want a reject naming the offset", err)
	}
}

// TestBOM: a UTF-8 byte order mark at the start of a text input is not part
// of the first record, in every text format.
func TestBOM(t *testing.T) {
	const bom = "\ufeff"
	inputs := map[Format]string{
		FormatDKT3:  "2\n1,2\n0,1\n1\n3\n1\n",
		FormatJSONL: `{"student_id":"a","skills":[1,2],"correct":[0,1]}` + "\n" + `{"student_id":"b","skills":[3],"correct":[1]}` + "\n",
		FormatCSV:   "student_id,skill_id,correct\na,1,0\na,2,1\nb,3,1\n",
	}
	for format, in := range inputs {
		t.Run(string(format), func(t *testing.T) {
			_, want := drain(t, readerFor(t, format, in, smallSkillsOpt), smallSkillsOpt)
			_, got := drain(t, readerFor(t, format, bom+in, smallSkillsOpt), smallSkillsOpt)
			if render(got) != render(want) {
				t.Errorf("with a BOM:\n%swithout:\n%s", render(got), render(want))
			}
			if len(want) != 2 || !want[0].ok || !want[1].ok {
				t.Errorf("want two sequences:\n%s", render(want))
			}
			// Opened from a file with the format detected, too.
			path := writeFile(t, "bom."+map[Format]string{FormatDKT3: "txt", FormatJSONL: "jsonl", FormatCSV: "csv"}[format], []byte(bom+in))
			r, err := Open(path, "", Options{NumSkills: smallSkillsOpt})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if _, got := drain(t, r, smallSkillsOpt); render(got) != render(want) {
				t.Errorf("opened with a BOM:\n%swithout:\n%s", render(got), render(want))
			}
		})
	}
}

// TestJSONLDuplicateStudent: a student on a second line is rejected, naming
// the line already scored, and not scored twice; a rejected first line does
// not count as scored.
func TestJSONLDuplicateStudent(t *testing.T) {
	in := `{"student_id":"a","skills":[1,2],"correct":[0,1]}
{"student_id":"b","skills":[1,99],"correct":[0,1]}
{"student_id":"a","skills":[3],"correct":[1]}
{"student_id":"b","skills":[4],"correct":[0]}
{"student_id":"c","skills":[5],"correct":[1]}

{"student_id":"a","skills":[6],"correct":[1]}
{"student_id":"b","skills":[7],"correct":[1]}
`
	seqs, outs := drain(t, readerFor(t, FormatJSONL, in, smallSkillsOpt), smallSkillsOpt)
	checkOutcomes(t, outs, []want{
		ok(1, "a", "[1 2]/[0 1]"),
		bad(2, "b", "skill id 99"),
		bad(3, "a", `student "a" appears again (first at line 1, which is scored)`),
		ok(4, "b", "[4]/[0]"),
		ok(5, "c", "[5]/[1]"),
		bad(7, "a", "first at line 1"),
		bad(8, "b", "first at line 4"),
	})
	if len(seqs) != 3 {
		t.Errorf("scored %d sequences, want 3", len(seqs))
	}
	for _, o := range outs {
		if !o.ok && strings.Contains(o.reason, "appears again") && !strings.Contains(o.reason, "one line with the whole history") {
			t.Errorf("reason does not say how to fix it: %s", o.reason)
		}
	}
}

// TestTooLongLineReason: the default limit is named in units a user reads,
// with what to do, for every text format.
func TestTooLongLineReason(t *testing.T) {
	r := &lineReader{max: defaultMaxLineBytes}
	p := r.tooLongLine(7)
	for _, w := range []string{"line 7 is longer than the 16 MiB limit", "--input-format", "long CSV or Parquet"} {
		if !strings.Contains(p.reason, w) {
			t.Errorf("reason %q lacks %q", p.reason, w)
		}
	}
	in := `{"student_id":"a","skills":[` + strings.Repeat("1,", 40) + `1],"correct":[1]}` + "\n"
	for format, text := range map[Format]string{FormatJSONL: in, FormatCSV: "student_id,skill_id,correct\n" + strings.Repeat("a", 80) + ",1,1\n"} {
		rd, err := NewReader(strings.NewReader(text), "in", format, Options{NumSkills: 10, MaxLineBytes: 50})
		if err != nil {
			t.Fatal(err)
		}
		_, outs := drain(t, rd, 10)
		if len(outs) != 1 || !strings.Contains(outs[0].reason, "longer than the 50 bytes limit") {
			t.Errorf("%s: %s", format, render(outs))
		}
	}
}
