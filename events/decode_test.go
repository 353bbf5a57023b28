package events

import (
	"strings"
	"testing"

	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/io/records"
)

const eventMaxBytes = 100

// Every reject of an event carries the kind of the check that failed.
func TestDecodeEventSetsTheRejectKind(t *testing.T) {
	cases := []struct {
		key, value string
		kind       records.RejectKind
	}{
		{"a", `{"student_id": "a", "skill_id": 1, "correct": 1, "note": "` + strings.Repeat("x", eventMaxBytes) + `"}`, records.RejectTooLarge},
		{"", `{"student_id": "a", "skill_id": 1, "correct": 1}`, records.RejectBadStudentID},
		{"b", `{"student_id": "a", "skill_id": 1, "correct": 1}`, records.RejectBadStudentID},
		{"a", `{"student_id": "a", "skill_id": 1, "correct": 3}`, records.RejectBadCorrect},
		{"a", `{"student_id": "a", "skill_id": 4, "correct": 1}`, records.RejectSkillRange},
		{"a", `{"student_id": "a", "skill_id": 1, "correct": 1, "ts": "yesterday"}`, records.RejectBadTimestamp},
		{"a", `not json`, records.RejectMalformed},
	}
	for _, c := range cases {
		_, reject := decodeEvent(kafka.Message{Topic: "in", Key: []byte(c.key), Value: []byte(c.value)}, eventSkills, eventMaxBytes)
		if reject == nil {
			t.Fatalf("key %q value %q was not rejected", c.key, c.value)
		}
		if reject.Kind != c.kind {
			t.Errorf("key %q value %q: kind %q (reason %q), want %s", c.key, c.value, reject.Kind, reject.Reason, c.kind)
		}
	}
}
