package records

import (
	"errors"
	"fmt"
)

// ErrInvalid is matched (errors.Is) by every error Validate returns.
var ErrInvalid = errors.New("records: invalid sequence")

type invalidError struct{ reason string }

func (e *invalidError) Error() string        { return e.reason }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

func invalidf(format string, args ...any) error {
	return &invalidError{reason: fmt.Sprintf(format, args...)}
}

// Validate checks a sequence against the model's skill count. The error text
// is a reject reason: it names the offending index and value, the valid range
// and the fix.
func Validate(seq Sequence, numSkills int) error {
	if numSkills <= 0 {
		return invalidf("num_skills is %d: it must be the model's positive skill count", numSkills)
	}
	if len(seq.Skills) != len(seq.Correct) {
		return invalidf("length mismatch: %d skill ids but %d correctness flags; give exactly one flag per interaction", len(seq.Skills), len(seq.Correct))
	}
	if len(seq.Skills) == 0 {
		return invalidf("empty sequence: a record needs at least one interaction; drop students without interactions")
	}
	for i, s := range seq.Skills {
		if s < 0 || int(s) >= numSkills {
			return invalidf("skill id %d at index %d is outside [0,%d): map skill ids to 0..%d or score with a model trained on more skills", s, i, numSkills, numSkills-1)
		}
	}
	for i, c := range seq.Correct {
		if c != 0 && c != 1 {
			return invalidf("correct flag %d at index %d must be 0 or 1", c, i)
		}
	}
	return nil
}

// skillOutOfRange is the reason for a skill id that does not even fit int32,
// worded like Validate's.
func skillOutOfRange(v int64, where string, numSkills int) string {
	return fmt.Sprintf("skill id %d %s is outside [0,%d): map skill ids to 0..%d or score with a model trained on more skills", v, where, numSkills, numSkills-1)
}
