package records

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// fuzzDrain checks the decoder properties on any input: no panic, every
// sequence passes Validate, every reject has a reason and a kind. Text decoders consume
// at least one line per result, so they must end within maxCalls (strict);
// a few hundred bytes of Parquet can legally encode billions of RLE rows, so
// there the bound only stops the run.
func fuzzDrain(t *testing.T, r Reader, numSkills, maxCalls int, strict bool) {
	defer r.Close()
	for calls := 0; calls < maxCalls; calls++ {
		seq, err := r.Next()
		if err == io.EOF {
			return
		}
		var rej *RejectError
		if errors.As(err, &rej) {
			if rej.Reason == "" || !rej.Kind.Valid() {
				t.Fatalf("reject without a reason or a kind: %+v", rej)
			}
			continue
		}
		if err != nil {
			return // fatal: the input cannot be read further
		}
		if verr := Validate(seq, numSkills); verr != nil {
			t.Fatalf("invalid sequence returned: %+v: %v", seq, verr)
		}
	}
	if strict {
		t.Fatalf("Next did not reach the end within %d calls", maxCalls)
	}
}

func fuzzText(f *testing.F, format Format, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data), "fuzz", format, Options{NumSkills: 10, MaxLineBytes: 4096})
		if err != nil {
			return
		}
		fuzzDrain(t, r, 10, len(data)+2, true)
	})
}

func FuzzDKT3(f *testing.F) {
	fuzzText(f, FormatDKT3,
		"4\n5,5,5,5,\n0,1,1,1,\n1\n3,\n0,\n",
		"2\r\n1,2\r\n0,1\r\n\r\n",
		"abc\n1,2,\n0,1,\n1\n4,\n1,\n",
		"2\n1,2,\n1\n4,\n1,\n",
		"0\n\n\n",
		"2\n\"1\",\"2\"\n0,1\n1\n4\n1\n",
		"3\n1,2,\n3,\n0,1,1,\n1\n4\n1\n",
		"1\n2.0\n1\n1\n007\ntrue\n1\n+1\n 1 \n",
	)
}

func FuzzLongCSV(f *testing.F) {
	fuzzText(f, FormatCSV,
		"student_id,skill_id,correct\na,1,0\na,2,1\nb,3,1\n",
		"timestamp,correct,extra,student_id,skill_id\r\n5,1,\"x,\"\"y\",a,3\r\n4,0,,a,2\r\n",
		"student_id,skill_id,correct,timestamp\na,1,0,2020-01-01T00:00:00Z\nb,1,1,1.5\na,2,1,x\n",
		"student_id,skill_id,correct\n\"a,1,1\n,1,1\na,1\n",
		"student_id,skill_id,correct\na,1,0\na,\"x\ny\",1\na,3,1\n\"b\nc\",2,1\nd,3,1\n",
		"student_id,skill_id,correct\na,1,0\n,2,1\na,3,1,4\na,1\na,\"2\"x,1\nb,1e0,true\n",
		"student_id,skill_id,correct\na,\"x\n\"\"y\",1\nb,3,1\n\"never closes,1,1\nc,1,1\n",
	)
}

// FuzzSniffed: whatever the bytes, a sniffed stream ("-", as stdin) is decoded
// in the format found, from the same reader, with the decoder properties.
func FuzzSniffed(f *testing.F) {
	for _, s := range []string{
		"1\n4\n1\n",
		"\ufeffstudent_id,skill_id,correct\na,4,1\n",
		`{"student_id":"a","skills":[4],"correct":[1]}` + "\n",
		"PAR1",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), SniffBufferSize)
		format, err := SniffFormat("-", br)
		if err != nil || format == FormatParquet {
			return
		}
		r, err := NewReader(br, "fuzz", format, Options{NumSkills: 10, MaxLineBytes: 4096})
		if err != nil {
			return
		}
		fuzzDrain(t, r, 10, len(data)+2, true)
	})
}

func FuzzJSONL(f *testing.F) {
	fuzzText(f, FormatJSONL,
		`{"student_id":"a","skills":[1,2],"correct":[0,1]}`+"\n"+`{"student_id":7,"skills":[3.0],"correct":[true]}`+"\n",
		`{"student_id":null}`+"\n\n[1,2]\n{",
	)
}

func FuzzJSONSequence(f *testing.F) {
	for _, s := range []string{
		`{"student_id":"a","skills":[1,2],"correct":[0,1]}`,
		`{"student_id":1e3,"skills":[1],"correct":[false],"x":{}}`,
		`{"student_id":"","skills":[-1],"correct":[2]}`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		seq, err := DecodeJSONSequence(data, 10)
		if err != nil {
			var rej *RejectError
			if !errors.As(err, &rej) || rej.Reason == "" || !rej.Kind.Valid() {
				t.Fatalf("error is not a reject with a reason and a kind: %v (%+v)", err, rej)
			}
			return
		}
		if verr := Validate(seq, 10); verr != nil || seq.StudentID == "" {
			t.Fatalf("invalid sequence returned: %+v: %v", seq, verr)
		}
	})
}

func FuzzParquet(f *testing.F) {
	ts := func(v int64) *int64 { return &v }
	rows := []pqRow{{"a", 3, 1, ts(30)}, {"a", 1, 0, ts(10)}, {"b", 12, 1, ts(5)}, {"c", 2, 2, nil}, {"a", 1, 1, ts(1)}}
	f.Add(parquetBytes(f, rows, pqLayout{timestamp: true, rowGroupLen: 2}))
	f.Add(parquetBytes(f, seqRows([]Sequence{{StudentID: "7", Skills: []int32{1, 2}, Correct: []int8{0, 1}}}), pqLayout{intStudent: true, boolCorrect: true}))
	// A damaged page in a middle row group (see TestParquetCorruptMiddle).
	f.Add(corruptRowGroup(f, parquetBytes(f, rows, pqLayout{timestamp: true, rowGroupLen: 2, snappy: true}), 1, 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := newParquetReader(bytes.NewReader(data), "fuzz.parquet", Options{NumSkills: 10}, 3)
		if err != nil {
			return
		}
		fuzzDrain(t, r, 10, 2000, false)
	})
}
