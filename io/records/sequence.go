// Package records decodes student interaction records from files and messages
// into validated sequences. Bad records are reported, never dropped silently.
package records

// Sequence is one student's interaction history, oldest first, validated
// against the model's skill count.
type Sequence struct {
	StudentID string
	Skills    []int32 // skill id per interaction, in [0, num_skills)
	Correct   []int8  // 0 or 1 per interaction, same length as Skills
	// Where the record came from, for rejects and for consumers that deduplicate.
	Line   int // 1-based line of the record's first line in a text file; 0 when not line-based
	Record int // 0-based ordinal of the record in its input
}

// Len is the number of interactions.
func (s Sequence) Len() int { return len(s.Skills) }
