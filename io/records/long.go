package records

import (
	"fmt"
	"io"
	"sort"
	"strings"
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
	end     int      // last line of a row spanning several lines (broken quoting); 0: pos
	problem *problem // non-nil: the row is unusable
	orphan  bool     // the row names no student
}

func (r longRow) last() int { return max(r.pos, r.end) }

// rowSource yields rows; io.EOF at the end, any other error is fatal.
type rowSource interface {
	next() (longRow, error)
	close() error
}

type firstSeen struct{ pos, record int }

// longGroup is one student's run of rows. A student with any unusable row
// is rejected whole: scoring the rest would score a history with a gap.
type longGroup struct {
	student string
	pos     int // first row
	record  int
	skills  []int32
	correct []int8
	ts      []tsKey
	problem *problem // the first bad row's
	badPos  []int    // every bad row (its first line), in order
	allPos  []int    // every row (each line of a row spanning several), in order
	dupOf   *firstSeen
	rows    int
}

// result is one outcome of Next, queued while the rows after it decide it.
type result struct {
	seq Sequence
	err error
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
	seen map[string]firstSeen
	cur  *longGroup
	// orphans are unusable rows that name no student, read after cur's
	// rows: if cur's rows go on after them they are a gap in cur's history
	// and reject it; otherwise each is rejected on its own.
	orphans []longRow
	queue   []result
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

// Next hands out results in input order. Outcomes decided before a fatal
// read error are still handed out first; the student being read when it
// happened is not (part of its history is unread), and the error says where
// that student's rows start.
func (r *longReader) Next() (Sequence, error) {
	for len(r.queue) == 0 {
		if r.fatal != nil {
			return Sequence{}, r.fatal
		}
		if r.done {
			return Sequence{}, io.EOF
		}
		r.step()
	}
	out := r.queue[0]
	r.queue = r.queue[1:]
	return out.seq, out.err
}

// step reads one row and queues whatever it decides.
func (r *longReader) step() {
	row, err := r.src.next()
	switch {
	case err == io.EOF:
		r.done = true
		r.flush()
	case err != nil:
		if g := r.cur; g != nil {
			err = fmt.Errorf("%w; the student whose rows start at %s %d was being read and is not scored", err, r.posWord, g.pos)
		}
		r.fatal = err
	case row.orphan && r.cur == nil:
		r.rejectOrphan(row)
	case row.orphan:
		r.orphans = append(r.orphans, row)
	case r.cur != nil && row.student == r.cur.student:
		for _, o := range r.orphans {
			r.cur.add(o)
		}
		r.orphans = r.orphans[:0]
		r.cur.add(row)
	default:
		r.flush()
		r.cur = r.start(row)
	}
}

// flush queues the current student's outcome, then the orphans read after it.
func (r *longReader) flush() {
	if g := r.cur; g != nil {
		r.cur = nil
		seq, err := r.finish(g)
		r.queue = append(r.queue, result{seq, err})
	}
	for _, o := range r.orphans {
		r.rejectOrphan(o)
	}
	r.orphans = r.orphans[:0]
}

func (r *longReader) rejectOrphan(row longRow) {
	rec := r.records
	r.records++
	r.queue = append(r.queue, result{err: r.reject(row.pos, rec, "", row.problem)})
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
	if g.dupOf != nil {
		return
	}
	for p := row.pos; p <= row.last(); p++ {
		g.allPos = append(g.allPos, p)
	}
	if row.problem != nil {
		if g.problem == nil {
			g.problem = row.problem
			g.skills, g.correct, g.ts = nil, nil, nil
		}
		g.badPos = append(g.badPos, row.pos)
		return
	}
	if g.problem != nil {
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

// wholeStudent is the reject of a student with bad rows: the first bad row's
// reason, then where every bad row and every row of the student is.
func (r *longReader) wholeStudent(g *longGroup) *problem {
	reason := g.problem.reason
	if len(g.badPos) > 1 {
		reason += fmt.Sprintf("; %d bad rows in all, at %ss %s", len(g.badPos), r.posWord, positions(g.badPos))
	}
	if g.rows > 1 {
		reason += fmt.Sprintf("; so none of this student's %d rows (%ss %s) is scored, since scoring the others would leave a gap in the history: fix the bad rows and rerun",
			g.rows, r.posWord, positions(g.allPos))
	}
	return &problem{kind: g.problem.kind, reason: reason}
}

// maxRanges bounds how many ranges positions lists, so that a reject stays
// readable; a student's rows are normally one contiguous range.
const maxRanges = 20

// positions renders sorted positions as ranges: "3-7, 9, 12-13".
func positions(ps []int) string {
	var b strings.Builder
	ranges := 0
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] <= ps[j]+1 {
			j++
		}
		if ranges == maxRanges {
			fmt.Fprintf(&b, ", ... (%d more)", len(ps)-i)
			break
		}
		if ranges > 0 {
			b.WriteString(", ")
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", ps[i], ps[j])
		} else {
			fmt.Fprintf(&b, "%d", ps[i])
		}
		ranges++
		i = j + 1
	}
	return b.String()
}

func (r *longReader) finish(g *longGroup) (Sequence, error) {
	if g.dupOf != nil {
		return Sequence{}, r.reject(g.pos, g.record, g.student, problemf(RejectOutOfOrder,
			"student %q reappears at %s %d after other students (first seen at %s %d, record %d); its %d row(s) here are not scored: rows of one student must be contiguous, so sort the input by student_id with a stable sort that keeps file order (pandas: df.sort_values(\"student_id\", kind=\"stable\")) and rerun",
			g.student, r.posWord, g.pos, r.posWord, g.dupOf.pos, g.dupOf.record, g.rows))
	}
	if g.problem != nil {
		return Sequence{}, r.reject(g.pos, g.record, g.student, r.wholeStudent(g))
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
