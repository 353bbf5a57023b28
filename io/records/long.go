package records

import (
	"io"
	"sort"
)

// The long layout (CSV and Parquet) has one interaction per row. Rows of one
// student form one sequence; decoding streams, so a student's rows must be
// contiguous. A student that reappears after others is rejected (its earlier
// rows were already handed out) with a reason that says to sort the file.

// longRow is one decoded row.
type longRow struct {
	student string
	skill   int32
	correct int8
	ts      tsKey
	pos     int      // 1-based line (CSV) or row (Parquet)
	problem *problem // non-nil: the row is unusable
	orphan  bool     // the row names no student: it is rejected on its own
}

// rowSource yields rows; io.EOF at the end, any other error is fatal.
type rowSource interface {
	next() (longRow, error)
	close() error
}

type firstSeen struct{ pos, record int }

type longGroup struct {
	student string
	pos     int // first row
	record  int
	skills  []int32
	correct []int8
	ts      []tsKey
	problem *problem
	dupOf   *firstSeen
	rows    int
}

type longReader struct {
	name      string
	src       rowSource
	numSkills int
	hasTS     bool
	posWord   string // "line" or "row"
	lineBased bool

	// seen holds one entry per student handed out so far: the price of
	// detecting non-contiguous students while streaming (a few dozen bytes per
	// student, never per row).
	seen    map[string]firstSeen
	cur     *longGroup
	records int
	done    bool
	fatal   error
}

func newLongReader(name string, src rowSource, numSkills int, hasTS, lineBased bool) *longReader {
	word := "row"
	if lineBased {
		word = "line"
	}
	return &longReader{name: name, src: src, numSkills: numSkills, hasTS: hasTS, posWord: word, lineBased: lineBased, seen: map[string]firstSeen{}}
}

func (r *longReader) Close() error { return r.src.close() }

func (r *longReader) Next() (Sequence, error) {
	for {
		if r.fatal != nil {
			return Sequence{}, r.fatal
		}
		if r.done {
			return Sequence{}, io.EOF
		}
		row, err := r.src.next()
		if err == io.EOF {
			r.done = true
			if g := r.cur; g != nil {
				r.cur = nil
				return r.finish(g)
			}
			return Sequence{}, io.EOF
		}
		if err != nil {
			r.fatal = err
			return Sequence{}, err
		}
		if row.orphan {
			rec := r.records
			r.records++
			return Sequence{}, r.reject(row.pos, rec, "", row.problem)
		}
		if r.cur != nil && row.student == r.cur.student {
			r.cur.add(row)
			continue
		}
		prev := r.cur
		r.cur = r.start(row)
		if prev != nil {
			return r.finish(prev)
		}
	}
}

func (r *longReader) start(row longRow) *longGroup {
	g := &longGroup{student: row.student, pos: row.pos, record: r.records}
	r.records++
	if first, ok := r.seen[row.student]; ok {
		g.dupOf = &first
	} else {
		r.seen[row.student] = firstSeen{pos: row.pos, record: g.record}
	}
	g.add(row)
	return g
}

func (g *longGroup) add(row longRow) {
	g.rows++
	if g.dupOf != nil || g.problem != nil {
		return
	}
	if row.problem != nil {
		g.problem = row.problem
		g.skills, g.correct, g.ts = nil, nil, nil
		return
	}
	g.skills = append(g.skills, row.skill)
	g.correct = append(g.correct, row.correct)
	g.ts = append(g.ts, row.ts)
}

func (r *longReader) reject(pos, record int, student string, p *problem) *RejectError {
	e := &RejectError{Input: r.name, Record: record, StudentID: student, Kind: p.kind, Reason: p.reason}
	if r.lineBased {
		e.Line = pos
	}
	return e
}

func (r *longReader) finish(g *longGroup) (Sequence, error) {
	if g.dupOf != nil {
		return Sequence{}, r.reject(g.pos, g.record, g.student, problemf(RejectOutOfOrder,
			"student %q reappears at %s %d after other students (first seen at %s %d, record %d); its %d row(s) here are not scored: rows of one student must be contiguous, so sort the input by student_id with a stable sort that keeps file order (pandas: df.sort_values(\"student_id\", kind=\"stable\")) and rerun",
			g.student, r.posWord, g.pos, r.posWord, g.dupOf.pos, g.dupOf.record, g.rows))
	}
	if g.problem != nil {
		return Sequence{}, r.reject(g.pos, g.record, g.student, g.problem)
	}
	if r.hasTS {
		if p := orderByTimestamp(g); p != nil {
			return Sequence{}, r.reject(g.pos, g.record, g.student, p)
		}
	}
	seq := Sequence{StudentID: g.student, Skills: g.skills, Correct: g.correct, Record: g.record}
	if r.lineBased {
		seq.Line = g.pos
	}
	if p := validate(seq, r.numSkills); p != nil {
		return Sequence{}, r.reject(g.pos, g.record, g.student, p)
	}
	return seq, nil
}

// orderByTimestamp sorts a student's interactions by timestamp, stable so that
// ties keep file order.
func orderByTimestamp(g *longGroup) *problem {
	if len(g.ts) < 2 {
		return nil
	}
	for _, t := range g.ts[1:] {
		if t.kind != g.ts[0].kind {
			return problemf(RejectBadTimestamp, "timestamps mix numeric epochs and calendar times, which cannot be ordered against each other; use one form for the whole column")
		}
	}
	idx := make([]int, len(g.ts))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return g.ts[idx[a]].less(g.ts[idx[b]]) })
	skills := make([]int32, len(idx))
	correct := make([]int8, len(idx))
	for to, from := range idx {
		skills[to], correct[to] = g.skills[from], g.correct[from]
	}
	g.skills, g.correct = skills, correct
	return nil
}
