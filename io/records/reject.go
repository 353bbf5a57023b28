package records

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// RejectError describes one bad record. Decoders return it from Next and stay
// usable; the worker writes it to the rejects file or dead-letter topic.
type RejectError struct {
	Input     string // file name (or message source); empty when unknown
	Line      int    // 1-based line of the record's first line in a text input; 0 when not line-based
	Record    int    // 0-based ordinal of the record in its input; -1 when not applicable (single messages)
	StudentID string // empty when the record names no student
	Reason    string // what is wrong and how to fix it
}

// Error renders "INPUT:LINE: record R (student S): REASON", leaving out the
// parts that are unknown.
func (e *RejectError) Error() string {
	var b strings.Builder
	if e.Input != "" {
		b.WriteString(e.Input)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Record >= 0 {
		fmt.Fprintf(&b, "record %d", e.Record)
		if e.StudentID != "" {
			fmt.Fprintf(&b, " (student %s)", e.StudentID)
		}
		b.WriteString(": ")
	} else if e.StudentID != "" {
		fmt.Fprintf(&b, "student %s: ", e.StudentID)
	}
	b.WriteString(e.Reason)
	return b.String()
}

// RejectLog writes rejects as JSON Lines, one object per reject, the format of
// the score command's O.rejects.jsonl file. It is safe for concurrent use.
type RejectLog struct {
	mu    sync.Mutex
	enc   *json.Encoder
	count int
}

// NewRejectLog writes to w; the caller owns w (flushing and closing it).
func NewRejectLog(w io.Writer) *RejectLog {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &RejectLog{enc: enc}
}

type rejectLine struct {
	Input     string `json:"input"`
	Line      int    `json:"line"`
	Record    int    `json:"record"`
	StudentID string `json:"student_id"`
	Reason    string `json:"reason"`
}

// Write appends one reject; Count counts only rejects written successfully.
func (l *RejectLog) Write(e *RejectError) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.enc.Encode(rejectLine{Input: e.Input, Line: e.Line, Record: e.Record, StudentID: e.StudentID, Reason: e.Reason})
	if err != nil {
		return fmt.Errorf("records: write reject log: %w", err)
	}
	l.count++
	return nil
}

// Count is the number of rejects written.
func (l *RejectLog) Count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count
}
