package batching

import (
	"errors"
	"fmt"
)

// ErrInvalidItem is wrapped by every error about an Item's contents.
var ErrInvalidItem = errors.New("batching: invalid item")

// Item is one student's sequence. The batcher keeps Skills and Correct (it
// does not copy them) until the Batch holding the item is released, so the
// caller must not modify them in between.
type Item struct {
	Skills  []int32
	Correct []int8
	Ref     any // opaque to the batcher; the caller uses it to map batch rows back to its own bookkeeping
}

// Len is the number of real steps of the sequence.
func (it Item) Len() int { return len(it.Skills) }

// ValidateItem checks what the padding depends on. Skill ranges are also
// checked upstream against the model, but the batcher checks them again so
// that one bad id is rejected with its own item instead of failing the whole
// batch it would be scored in.
func ValidateItem(it Item, numSkills int) error {
	if len(it.Skills) == 0 {
		return fmt.Errorf("%w: empty sequence; drop students without interactions before batching", ErrInvalidItem)
	}
	if len(it.Skills) != len(it.Correct) {
		return fmt.Errorf("%w: %d skills but %d correctness flags; each interaction needs exactly one of each",
			ErrInvalidItem, len(it.Skills), len(it.Correct))
	}
	for t, s := range it.Skills {
		if s < 0 || int(s) >= numSkills {
			return fmt.Errorf("%w: step %d has skill id %d outside [0, %d); remap or reject it upstream",
				ErrInvalidItem, t, s, numSkills)
		}
	}
	for t, c := range it.Correct {
		if c != 0 && c != 1 {
			return fmt.Errorf("%w: step %d has correct=%d; it must be 0 or 1", ErrInvalidItem, t, c)
		}
	}
	return nil
}
