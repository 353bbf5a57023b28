package records

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// jsonRecord is one interaction history; unknown fields are ignored. Values
// stay raw so that a bad one can be reported with its index.
type jsonRecord struct {
	StudentID json.RawMessage   `json:"student_id"`
	Skills    []json.RawMessage `json:"skills"`
	Correct   []json.RawMessage `json:"correct"`
}

const jsonShape = `{"student_id": "...", "skills": [...], "correct": [...]}`

// DecodeJSONSequence decodes and validates one JSON record (a JSONL line or a
// Kafka message value). A bad record gives a *RejectError with Record -1 and
// no Input; callers fill those in (or read Reason and StudentID).
func DecodeJSONSequence(data []byte, numSkills int) (Sequence, error) {
	seq, p := decodeJSON(data, numSkills)
	if p != nil {
		return Sequence{}, &RejectError{Record: -1, StudentID: seq.StudentID, Kind: p.kind, Reason: p.reason}
	}
	return seq, nil
}

// decodeJSON returns the sequence or why it is rejected; on reject the student
// id is still set when it could be read.
func decodeJSON(data []byte, numSkills int) (Sequence, *problem) {
	// encoding/json would turn invalid UTF-8 into U+FFFD silently, changing a
	// student id behind the producer's back.
	if !utf8.Valid(data) {
		return Sequence{}, problemf(RejectNotUTF8, "record is not valid UTF-8 (first bad byte at offset %d); encode it as UTF-8 JSON", firstInvalidUTF8(data))
	}
	var rec jsonRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return Sequence{}, problemf(RejectMalformed, "not a JSON record %s: %v", jsonShape, err)
	}
	var seq Sequence
	id, p := jsonStudentID(rec.StudentID)
	if p != nil {
		return seq, p
	}
	seq.StudentID = id
	if len(rec.Skills) != len(rec.Correct) {
		return seq, problemf(RejectLengthMismatch, "length mismatch: %d skills but %d correct flags; give exactly one flag per interaction", len(rec.Skills), len(rec.Correct))
	}
	seq.Skills = make([]int32, len(rec.Skills))
	for i, raw := range rec.Skills {
		v, ok := parseInteger(bytes.TrimSpace(raw))
		if !ok {
			return seq, problemf(RejectMalformed, "skills[%d] is %s, not an integer", i, quoteSample(raw))
		}
		if v < 0 || v >= int64(numSkills) {
			return seq, skillOutOfRange("", v, fmt.Sprintf("at index %d", i), numSkills)
		}
		seq.Skills[i] = int32(v)
	}
	seq.Correct = make([]int8, len(rec.Correct))
	for i, raw := range rec.Correct {
		v, ok := parseFlag(bytes.TrimSpace(raw))
		if !ok {
			return seq, problemf(RejectBadCorrect, "correct[%d] is %s; it must be 0 or 1", i, quoteSample(raw))
		}
		seq.Correct[i] = v
	}
	if p := validate(seq, numSkills); p != nil {
		return seq, p
	}
	return seq, nil
}

// jsonStudentID accepts a non-empty string or an integer (given as its
// decimal string).
func jsonStudentID(raw json.RawMessage) (string, *problem) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", problemf(RejectBadStudentID, "student_id is missing: every record needs a student_id (string or integer)")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", problemf(RejectBadStudentID, "student_id %s is not a valid JSON string", quoteSample(raw))
		}
		if s == "" {
			return "", problemf(RejectBadStudentID, "student_id is empty: every record needs a student_id (string or integer)")
		}
		return s, nil
	}
	// The same integer syntax as skill ids; an id beyond int64 would lose
	// digits as a number, so it must come as a string.
	if v, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return strconv.FormatInt(v, 10), nil
	}
	return "", problemf(RejectBadStudentID, "student_id %s must be a string or an integer (digits only, within 64 bits; write longer or fractional ids as strings)", quoteSample(raw))
}

// jsonlReader reads one JSON record per line; blank lines are skipped.
type jsonlReader struct {
	lr        *lineReader
	name      string
	numSkills int
	record    int
	// firstLine is the line of each student scored so far: a student seen
	// again is rejected, not scored twice. One entry per student, as in the
	// long CSV reader.
	firstLine map[string]int
}

func newJSONLReader(r io.Reader, name string, opts Options) (*jsonlReader, error) {
	lr := newLineReader(r, name, opts.maxLine())
	if err := lr.peek(); err != nil {
		return nil, err
	}
	return &jsonlReader{lr: lr, name: name, numSkills: opts.NumSkills, firstLine: map[string]int{}}, nil
}

func (j *jsonlReader) Close() error { return nil }

func (j *jsonlReader) Next() (Sequence, error) {
	for {
		text, tooLong, err := j.lr.next()
		if err != nil {
			return Sequence{}, err
		}
		line := j.lr.line
		if len(bytes.TrimSpace(text)) == 0 && !tooLong {
			continue
		}
		rec := j.record
		j.record++
		if tooLong {
			p := j.lr.tooLongLine(line)
			return Sequence{}, &RejectError{Input: j.name, Line: line, Record: rec, Kind: p.kind, Reason: p.reason}
		}
		seq, p := decodeJSON(text, j.numSkills)
		if p != nil {
			return Sequence{}, &RejectError{Input: j.name, Line: line, Record: rec, StudentID: seq.StudentID, Kind: p.kind, Reason: p.reason}
		}
		if first, seen := j.firstLine[seq.StudentID]; seen {
			return Sequence{}, &RejectError{Input: j.name, Line: line, Record: rec, StudentID: seq.StudentID, Kind: RejectOutOfOrder,
				Reason: fmt.Sprintf("student %q appears again (first at line %d, which is scored); this line is not scored: give each student one line with the whole history, merging the two in order", seq.StudentID, first)}
		}
		j.firstLine[seq.StudentID] = line
		seq.Line, seq.Record = line, rec
		return seq, nil
	}
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return -1
}
