package records

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Column names of the long layout (CSV header, Parquet schema), matched
// case-insensitively.
const (
	colStudent   = "student_id"
	colSkill     = "skill_id"
	colCorrect   = "correct"
	colTimestamp = "timestamp"
)

// csvRows reads the long CSV line by line. It splits lines itself (RFC 4180
// quoting within a line) instead of using encoding/csv so that every row has an
// exact line number and line length is bounded. Quoted fields spanning several
// lines are not supported: the lines from the one that opens such a field to
// the one that closes it are rejected together, as one broken row, so that
// the text inside the quotes never becomes a row of its own.
type csvRows struct {
	lr                              *lineReader
	numSkills                       int
	columns                         int // fields in the header
	iStudent, iSkill, iCorrect, iTS int
	fields                          [][]byte
}

func newCSVReader(r io.Reader, name string, opts Options) (Reader, error) {
	lr := newLineReader(r, name, opts.maxLine())
	var header []byte
	for {
		text, tooLong, err := lr.next()
		if err == io.EOF {
			return nil, fmt.Errorf("records: %s is empty: a long CSV starts with the header student_id,skill_id,correct[,timestamp]", name)
		}
		if err != nil {
			return nil, err
		}
		if tooLong {
			return nil, fmt.Errorf("records: %s: header line %d is longer than %d bytes: is this a long CSV? pass --input-format", name, lr.line, lr.max)
		}
		header = bytes.TrimPrefix(text, []byte("\ufeff"))
		if len(bytes.TrimSpace(header)) > 0 {
			break
		}
	}
	c := &csvRows{lr: lr, numSkills: opts.NumSkills, iStudent: -1, iSkill: -1, iCorrect: -1, iTS: -1}
	columns := splitHeader(string(header))
	c.columns = len(columns)
	for i, col := range columns {
		for _, p := range []struct {
			name string
			idx  *int
		}{{colStudent, &c.iStudent}, {colSkill, &c.iSkill}, {colCorrect, &c.iCorrect}, {colTimestamp, &c.iTS}} {
			if col == p.name && *p.idx < 0 {
				*p.idx = i
			}
		}
	}
	var missing []string
	for _, p := range []struct {
		name string
		idx  int
	}{{colStudent, c.iStudent}, {colSkill, c.iSkill}, {colCorrect, c.iCorrect}} {
		if p.idx < 0 {
			missing = append(missing, p.name)
		}
	}
	if len(missing) > 0 {
		hint := ""
		if _, ok := parseCount(bytes.TrimSpace(header)); ok {
			hint = " (it starts like a DKT 3-line file: pass --input-format dkt3)"
		}
		return nil, fmt.Errorf("records: %s: line %d %s is not a long-CSV header%s: it lacks column(s) %s; the header needs student_id,skill_id,correct and optionally timestamp, in any order",
			name, lr.line, quoteSample(header), hint, strings.Join(missing, ", "))
	}
	return newLongReader(name, c, opts.NumSkills, c.iTS >= 0, true), nil
}

func (c *csvRows) close() error { return nil }

func (c *csvRows) next() (longRow, error) {
	for {
		text, tooLong, err := c.lr.next()
		if err != nil {
			return longRow{}, err
		}
		line := c.lr.line
		if tooLong {
			return longRow{pos: line, orphan: true, problem: c.lr.tooLongLine(line)}, nil
		}
		if len(bytes.TrimSpace(text)) == 0 {
			continue
		}
		c.fields, err = splitCSVLine(text, c.fields[:0])
		if errors.Is(err, errQuote) {
			return c.spanningQuote(line, c.studentField())
		}
		if err != nil {
			return broken(line, line, c.studentField(), problemf(RejectMalformed, "line %d: %v; fix the quoting", line, err)), nil
		}
		if len(c.fields) != c.columns {
			return broken(line, line, c.studentField(), problemf(RejectMalformed, "line %d has %d fields but the header has %d; fix the row (a value holding a comma must be in double quotes)", line, len(c.fields), c.columns)), nil
		}
		return c.row(line), nil
	}
}

// spanningQuote handles a line that ends inside a quoted field: the field
// goes on to the line holding its closing quote (RFC 4180), and every line up
// to that one is rejected as one broken row of student (when the fields
// before the quote named one). A quote that never closes takes the rest of
// the input with it; the reject says so.
func (c *csvRows) spanningQuote(first int, student string) (longRow, error) {
	last, closed := first, false
	for !closed {
		text, _, err := c.lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return longRow{}, err
		}
		last = c.lr.line
		closed = closesQuote(text)
	}
	if !closed {
		return broken(first, last, student, problemf(RejectMalformed,
			"lines %d-%d: the double quote opened on line %d never closes, so the rest of the input is one broken row; fix the quoting (fields spanning lines are not supported)", first, last, first)), nil
	}
	return broken(first, last, student, problemf(RejectMalformed,
		"lines %d-%d: a quoted field opened on line %d closes on line %d; fields spanning lines are not supported: remove the line breaks inside the quotes", first, last, first, last)), nil
}

// studentField is the student_id of the fields split so far, copied (fields
// alias the line buffer), or "" when it was not reached.
func (c *csvRows) studentField() string {
	if c.iStudent < len(c.fields) {
		return string(bytes.TrimSpace(c.fields[c.iStudent]))
	}
	return ""
}

// broken is a row that cannot be read, of student when its student_id field
// was read, else of no student (an orphan).
func broken(first, last int, student string, p *problem) longRow {
	return longRow{pos: first, end: last, student: student, orphan: student == "", problem: p}
}

// closesQuote reports whether a line that starts inside a quoted field
// leaves it, and ends outside any quoted field.
func closesQuote(line []byte) bool {
	in := true
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] != '"':
		case in && i+1 < len(line) && line[i+1] == '"':
			i++ // an escaped quote
		case in:
			in = false
		default:
			// Outside a field, a quote opens one only as the field's first
			// byte, as in splitCSVLine.
			in = i == 0 || line[i-1] == ','

		}
	}
	return !in
}

func (c *csvRows) row(line int) longRow {
	f := c.fields
	if c.iStudent >= len(f) || len(bytes.TrimSpace(f[c.iStudent])) == 0 {
		return longRow{pos: line, orphan: true, problem: problemf(RejectBadStudentID, "line %d has no student_id (column %d of the header); fill it in or remove the row", line, c.iStudent+1)}
	}
	row := longRow{student: string(bytes.TrimSpace(f[c.iStudent])), pos: line}
	v := bytes.TrimSpace(f[c.iSkill])
	skill, isInt := parseInteger(v)
	if !isInt {
		row.problem = problemf(RejectMalformed, "line %d: skill_id %s is not an integer (digits only)", line, quoteSample(v))
		return row
	}
	if skill < 0 || skill >= int64(c.numSkills) {
		row.problem = skillOutOfRange(fmt.Sprintf("line %d: ", line), skill, "", c.numSkills)
		return row
	}
	row.skill = int32(skill)
	var ok bool
	v = bytes.TrimSpace(f[c.iCorrect])
	if row.correct, ok = parseFlag(v); !ok {
		row.problem = problemf(RejectBadCorrect, "line %d: correct %s must be 0 or 1", line, quoteSample(v))
		return row
	}
	if c.iTS >= 0 {
		v = bytes.TrimSpace(f[c.iTS])
		if row.ts, ok = parseTimestamp(v); !ok {
			row.problem = problemf(RejectBadTimestamp, "line %d: timestamp %s is not an integer/float epoch or an RFC3339 time; fix it or drop the timestamp column to keep file order", line, quoteSample(v))
		}
	}
	return row
}

var errQuote = errors.New("unbalanced double quote")

// splitCSVLine splits one line into fields with RFC 4180 quoting ("" inside a
// quoted field is a quote). Fields alias line unless they contain escapes.
func splitCSVLine(line []byte, dst [][]byte) ([][]byte, error) {
	for {
		if len(line) > 0 && line[0] == '"' {
			var field []byte
			rest := line[1:]
			for {
				q := bytes.IndexByte(rest, '"')
				if q < 0 {
					return dst, errQuote
				}
				if q+1 < len(rest) && rest[q+1] == '"' {
					field = append(field, rest[:q+1]...)
					rest = rest[q+2:]
					continue
				}
				if field == nil {
					field = rest[:q:q]
				} else {
					field = append(field, rest[:q]...)
				}
				rest = rest[q+1:]
				break
			}
			dst = append(dst, field)
			// After the closing quote only a separator or the end may follow
			// (spaces tolerated).
			rest = bytes.TrimLeft(rest, " \t")
			if len(rest) == 0 {
				return dst, nil
			}
			if rest[0] != ',' {
				return dst, fmt.Errorf("text %s after a closing double quote", quoteSample(rest))
			}
			line = rest[1:]
			continue
		}
		comma := bytes.IndexByte(line, ',')
		if comma < 0 {
			return append(dst, line), nil
		}
		dst = append(dst, line[:comma])
		line = line[comma+1:]
	}
}
