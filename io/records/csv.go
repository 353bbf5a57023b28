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
// exact line number, a bad line never swallows the ones after it (an
// unbalanced quote stays on its line), and line length is bounded. Quoted
// fields spanning several lines are therefore not supported: such a row is
// rejected.
type csvRows struct {
	lr                              *lineReader
	numSkills                       int
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
	for i, col := range splitHeader(string(header)) {
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
		if err != nil {
			return longRow{pos: line, orphan: true, problem: problemf(RejectMalformed, "line %d: %v; fix the quoting (fields spanning lines are not supported)", line, err)}, nil
		}
		return c.row(line), nil
	}
}

func (c *csvRows) row(line int) longRow {
	f := c.fields
	if c.iStudent >= len(f) || len(bytes.TrimSpace(f[c.iStudent])) == 0 {
		return longRow{pos: line, orphan: true, problem: problemf(RejectBadStudentID, "line %d has no student_id (column %d of the header); fill it in or remove the row", line, c.iStudent+1)}
	}
	row := longRow{student: string(bytes.TrimSpace(f[c.iStudent])), pos: line}
	field := func(i int, name string) ([]byte, bool) {
		if i >= len(f) {
			row.problem = problemf(RejectMalformed, "line %d has %d fields but the header puts %s in column %d; fix the row", line, len(f), name, i+1)
			return nil, false
		}
		return bytes.TrimSpace(f[i]), true
	}
	v, ok := field(c.iSkill, colSkill)
	if !ok {
		return row
	}
	skill, isInt := parseInteger(v)
	if !isInt {
		row.problem = problemf(RejectMalformed, "line %d: skill_id %s is not an integer", line, quoteSample(v))
		return row
	}
	if skill < 0 || skill >= int64(c.numSkills) {
		row.problem = skillOutOfRange(fmt.Sprintf("line %d: ", line), skill, "", c.numSkills)
		return row
	}
	row.skill = int32(skill)
	if v, ok = field(c.iCorrect, colCorrect); !ok {
		return row
	}
	if row.correct, ok = parseFlag(v); !ok {
		row.problem = problemf(RejectBadCorrect, "line %d: correct %s must be 0 or 1", line, quoteSample(v))
		return row
	}
	if c.iTS >= 0 {
		if v, ok = field(c.iTS, colTimestamp); !ok {
			return row
		}
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
