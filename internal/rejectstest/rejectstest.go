// Package rejectstest holds the hostile sequence records that the tests of
// every decoder of them share, each with the reject kind it must get.
package rejectstest

import "github.com/dktscore/dktscore/io/records"

// NumSkills is the model size the records are judged against (skill 4 is
// out of range).
const NumSkills = 4

// MaxBytes is the record size limit to decode them with: the too_large
// record is longer.
const MaxBytes = 100

// Sequences are hostile JSON sequence records, one or more per kind.
var Sequences = []struct {
	Value string
	Kind  records.RejectKind
}{
	{`{"student_id": "a", "skills": [1, 2], "correct": [1]}`, records.RejectLengthMismatch},
	{`{"student_id": "b", "skills": [1, 2], "correct": [1, 0`, records.RejectMalformed},
	{`not json at all`, records.RejectMalformed},
	{`{"student_id": "c", "skills": ["x"], "correct": [1]}`, records.RejectMalformed},
	{`{"student_id": "d", "skills": [4], "correct": [1]}`, records.RejectSkillRange},
	{`{"student_id": "e", "skills": [-1], "correct": [1]}`, records.RejectSkillRange},
	{`{"student_id": "f", "skills": [1], "correct": [2]}`, records.RejectBadCorrect},
	{`{"student_id": "", "skills": [1], "correct": [1]}`, records.RejectBadStudentID},
	{`{"skills": [1], "correct": [1]}`, records.RejectBadStudentID},
	{`{"student_id": [1], "skills": [1], "correct": [1]}`, records.RejectBadStudentID},
	{`{"student_id": "g", "skills": [], "correct": []}`, records.RejectEmpty},
	{"{\"student_id\": \"\xff\", \"skills\": [1], \"correct\": [1]}", records.RejectNotUTF8},
	{`{"student_id": "h", "skills": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "correct": [1]}`, records.RejectTooLarge},
}
