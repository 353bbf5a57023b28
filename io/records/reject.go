package records

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
)

// RejectKind is the kind of problem that made a record a reject, the label of
// the dktscore_rejects_total metric. The check that finds the problem decides
// the kind: a Reason quotes the record's values (student data), so a kind read
// back from its wording could be chosen by the record, and would silently
// turn into RejectOther when the wording changes. The zero RejectKind is not
// a kind: it marks a creation site that forgot to set one.
type RejectKind string

// Reject kinds. Their values are metric labels that dashboards select on
// (deploy/grafana/dktscore.json): keep them stable.
const (
	RejectTooLarge       RejectKind = "too_large"          // a message or line over the size limit
	RejectNotUTF8        RejectKind = "not_utf8"           // bytes that are not UTF-8
	RejectMalformed      RejectKind = "malformed"          // not the format's shape: bad JSON, a broken line, a value of the wrong type
	RejectOutOfOrder     RejectKind = "out_of_order"       // a student whose rows are not contiguous
	RejectBadTimestamp   RejectKind = "bad_timestamp"      // a timestamp that is not a time, or times that cannot be ordered
	RejectBadStudentID   RejectKind = "bad_student_id"     // a missing, empty or mistyped student id (or event key)
	RejectLengthMismatch RejectKind = "length_mismatch"    // skill ids and correctness flags of different counts
	RejectEmpty          RejectKind = "empty"              // a history without interactions
	RejectSkillRange     RejectKind = "skill_out_of_range" // a skill id the model does not know
	RejectBadCorrect     RejectKind = "bad_correct"        // a correctness flag that is not 0 or 1
	RejectOther          RejectKind = "other"              // none of the above
)

// RejectKinds lists every RejectKind, so that a metric can start each series
// at 0.
var RejectKinds = []RejectKind{RejectTooLarge, RejectNotUTF8, RejectMalformed, RejectOutOfOrder, RejectBadTimestamp,
	RejectBadStudentID, RejectLengthMismatch, RejectEmpty, RejectSkillRange, RejectBadCorrect, RejectOther}

// Valid reports whether k is one of RejectKinds; the zero kind is not.
func (k RejectKind) Valid() bool {
	for _, known := range RejectKinds {
		if k == known {
			return true
		}
	}
	return false
}

// RejectError describes one bad record. Decoders return it from Next and stay
// usable; the worker writes it to the rejects file or dead-letter topic.
type RejectError struct {
	Input     string     // file name (or message source); empty when unknown
	Line      int        // 1-based line of the record's first line in a text input; 0 when not line-based
	Record    int        // 0-based ordinal of the record in its input; -1 when not applicable (single messages)
	StudentID string     // empty when the record names no student
	Kind      RejectKind // set by the check that failed; never derived from Reason
	Reason    string     // what is wrong and how to fix it
}

// CountedKind is the kind to count and log e under: Kind, or RejectOther
// when it is not a valid kind (a creation site that forgot to set it, which
// the decoders' tests catch), so that such a reject is still counted.
func (e *RejectError) CountedKind() RejectKind {
	if e.Kind.Valid() {
		return e.Kind
	}
	return RejectOther
}

// problem is why a record is rejected, as a check found it: the kind of the
// check that failed and the reason for the user. Helpers return it instead of
// a bare reason so that the kind is decided where the problem is detected;
// the caller adds where the record is (input, line, record, student).
type problem struct {
	kind   RejectKind
	reason string
}

func problemf(kind RejectKind, format string, args ...any) *problem {
	return &problem{kind: kind, reason: fmt.Sprintf(format, args...)}
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
	mu  sync.Mutex
	enc *json.Encoder
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
	return nil
}
