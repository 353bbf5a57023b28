package records

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
)

// dkt3Reader decodes the DKT 3-line CSV: a count line n, a line of n skill ids
// and a line of n 0/1 flags, each list with or without a trailing comma. The
// student id is the record ordinal, as in the origin document.
//
// Resynchronisation, so that every well-formed record after damage is still
// read:
//   - Blank lines between records are skipped.
//   - A line where a count is expected but which is not a bare non-negative
//     integer starts a damaged region; the region runs up to the next bare
//     integer line and is rejected as ONE record (it is most often a record
//     whose count got corrupted), so student ids after it keep their ordinals.
//   - A bare integer where a list of n != 1 values is expected is taken as the
//     next record's count: the current record is rejected as truncated and
//     that line is read again as a count.
//   - A record whose three lines are present but inconsistent (length
//     mismatch, non-integer value, skill out of range, flag not 0/1, n = 0) is
//     rejected as a whole; decoding goes on after its third line.
type dkt3Reader struct {
	lr        *lineReader
	name      string
	numSkills int
	record    int // ordinal of the next record
}

func newDKT3Reader(r io.Reader, name string, opts Options) (*dkt3Reader, error) {
	lr := newLineReader(r, name, opts.maxLine())
	if err := lr.peek(); err != nil {
		return nil, err
	}
	return &dkt3Reader{lr: lr, name: name, numSkills: opts.NumSkills}, nil
}

func (d *dkt3Reader) Close() error { return nil }

func (d *dkt3Reader) reject(line, record int, p *problem) *RejectError {
	return &RejectError{Input: d.name, Line: line, Record: record, StudentID: strconv.Itoa(record), Kind: p.kind, Reason: p.reason}
}

func (d *dkt3Reader) Next() (Sequence, error) {
	var (
		junkFirst, junkLast int
		junkSample          string
	)
	flushJunk := func() error {
		rec := d.record
		d.record++
		span := fmt.Sprintf("line %d", junkFirst)
		if junkLast > junkFirst {
			span = fmt.Sprintf("lines %d-%d", junkFirst, junkLast)
		}
		return d.reject(junkFirst, rec, problemf(RejectMalformed, "not a DKT 3-line record: expected the interaction count (a bare non-negative integer) at line %d, got %s; skipped %s up to the next count line; fix or remove these lines", junkFirst, junkSample, span))
	}
	for {
		text, tooLong, err := d.lr.next()
		if err == io.EOF {
			if junkFirst > 0 {
				return Sequence{}, flushJunk()
			}
			return Sequence{}, io.EOF
		}
		if err != nil {
			return Sequence{}, err
		}
		t := bytes.TrimSpace(text)
		if len(t) == 0 && !tooLong {
			continue
		}
		n, ok := parseCount(t)
		if !ok || tooLong {
			if junkFirst == 0 {
				junkFirst, junkSample = d.lr.line, quoteSample(t)
			}
			junkLast = d.lr.line
			continue
		}
		if junkFirst > 0 {
			d.lr.unread()
			return Sequence{}, flushJunk()
		}
		return d.readRecord(n, d.lr.line)
	}
}

func (d *dkt3Reader) readRecord(n, line int) (Sequence, error) {
	rec := d.record
	d.record++
	seq := Sequence{StudentID: strconv.Itoa(rec), Line: line, Record: rec}
	// Both list lines are always consumed (unless they are missing), so that a
	// bad skill line does not make the flag line look like the next record.
	var p *problem
	for part := 0; part < 2; part++ {
		what := [2]string{"skill ids", "correctness flags"}[part]
		text, tooLong, err := d.lr.next()
		if err == io.EOF {
			return Sequence{}, d.reject(line, rec, problemf(RejectMalformed, "truncated record: the input ends before its %s line; a DKT 3-line record is a count line, a skill-id line and a correctness line", what))
		}
		if err != nil {
			return Sequence{}, err
		}
		t := bytes.TrimSpace(text)
		if _, isCount := parseCount(t); isCount && n != 1 && !tooLong {
			d.lr.unread()
			return Sequence{}, d.reject(line, rec, problemf(RejectMalformed, "truncated record: line %d should hold %d %s but looks like the next record's count; restore the missing line", d.lr.line, n, what))
		}
		if p != nil {
			continue
		}
		if tooLong {
			p = d.lr.tooLongLine(d.lr.line)
			continue
		}
		if part == 0 {
			seq.Skills, p = parseSkillList(t, n, d.numSkills, d.lr.line)
		} else {
			seq.Correct, p = parseFlagList(t, n, d.lr.line)
		}
	}
	if p != nil {
		return Sequence{}, d.reject(line, rec, p)
	}
	if p := validate(seq, d.numSkills); p != nil {
		return Sequence{}, d.reject(line, rec, p)
	}
	return seq, nil
}

// parseCount accepts a bare non-negative decimal integer (no sign, no comma).
func parseCount(t []byte) (int, bool) {
	if len(t) == 0 || len(t) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range t {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// listItems splits a comma-separated list, dropping one trailing empty item
// (the origin format ends every list with a comma).
func listItems(t []byte) [][]byte {
	if len(t) == 0 {
		return nil
	}
	items := bytes.Split(t, []byte(","))
	if len(bytes.TrimSpace(items[len(items)-1])) == 0 {
		items = items[:len(items)-1]
	}
	return items
}

func countMismatch(got, want, line int, what string) *problem {
	return problemf(RejectLengthMismatch, "length mismatch: line %d has %d %s but the count line says %d; fix the count or the list", line, got, what, want)
}

func parseSkillList(t []byte, n, numSkills, line int) ([]int32, *problem) {
	items := listItems(t)
	if len(items) != n {
		return nil, countMismatch(len(items), n, line, "skill ids")
	}
	out := make([]int32, len(items))
	for i, it := range items {
		v, ok := parseInteger(bytes.TrimSpace(it))
		if !ok {
			return nil, problemf(RejectMalformed, "line %d: skill id at index %d is %s, not an integer", line, i, quoteSample(it))
		}
		if v < 0 || v >= int64(numSkills) {
			return nil, skillOutOfRange(fmt.Sprintf("line %d: ", line), v, fmt.Sprintf("at index %d", i), numSkills)
		}
		out[i] = int32(v)
	}
	return out, nil
}

func parseFlagList(t []byte, n, line int) ([]int8, *problem) {
	items := listItems(t)
	if len(items) != n {
		return nil, countMismatch(len(items), n, line, "correctness flags")
	}
	out := make([]int8, len(items))
	for i, it := range items {
		v, ok := parseFlag(bytes.TrimSpace(it))
		if !ok {
			return nil, problemf(RejectBadCorrect, "line %d: correct flag at index %d is %s; it must be 0 or 1", line, i, quoteSample(it))
		}
		out[i] = v
	}
	return out, nil
}
