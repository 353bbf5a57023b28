package records

import (
	"errors"
)

// ErrInvalid is matched (errors.Is) by every error Validate returns.
var ErrInvalid = errors.New("records: invalid sequence")

type invalidError struct{ p *problem }

func (e *invalidError) Error() string        { return e.p.reason }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

// Validate checks a sequence against the model's skill count. The error text
// is a reject reason: it names the offending index and value, the valid range
// and the fix.
func Validate(seq Sequence, numSkills int) error {
	if p := validate(seq, numSkills); p != nil {
		return &invalidError{p}
	}
	return nil
}

// validate is Validate for the decoders, which need the kind as well.
func validate(seq Sequence, numSkills int) *problem {
	if numSkills <= 0 {
		// A caller's configuration error rather than a bad record; no record
		// kind fits it.
		return problemf(RejectOther, "num_skills is %d: it must be the model's positive skill count", numSkills)
	}
	if len(seq.Skills) != len(seq.Correct) {
		return problemf(RejectLengthMismatch, "length mismatch: %d skill ids but %d correctness flags; give exactly one flag per interaction", len(seq.Skills), len(seq.Correct))
	}
	if len(seq.Skills) == 0 {
		return problemf(RejectEmpty, "empty sequence: a record needs at least one interaction; drop students without interactions")
	}
	for i, s := range seq.Skills {
		if s < 0 || int(s) >= numSkills {
			return problemf(RejectSkillRange, "skill id %d at index %d is outside [0,%d): map skill ids to 0..%d or score with a model trained on more skills", s, i, numSkills, numSkills-1)
		}
	}
	for i, c := range seq.Correct {
		if c != 0 && c != 1 {
			return problemf(RejectBadCorrect, "correct flag %d at index %d must be 0 or 1", c, i)
		}
	}
	return nil
}

// skillOutOfRange is the reason for a skill id that does not even fit int32,
// worded like Validate's. prefix goes before it (a line or row number).
func skillOutOfRange(prefix string, v int64, where string, numSkills int) *problem {
	if where != "" {
		where = " " + where
	}
	return problemf(RejectSkillRange, "%sskill id %d%s is outside [0,%d): map skill ids to 0..%d or score with a model trained on more skills", prefix, v, where, numSkills, numSkills-1)
}
