package records

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeJSONEvent(t *testing.T) {
	const numSkills = 124
	good := []struct {
		name string
		in   string
		want Event
	}{
		{"plain", `{"student_id":"s1","skill_id":3,"correct":1}`, Event{"s1", 3, 1}},
		{"integer id, epoch ts", `{"student_id":42,"skill_id":7,"correct":0,"ts":1700000000}`, Event{"42", 7, 0}},
		{"rfc3339 ts, extra field", `{"student_id":"a","skill_id":123,"correct":0,"ts":"2024-01-02T03:04:05Z","x":[1]}`, Event{"a", 123, 0}},
		{"null ts", `{"student_id":"a","skill_id":0,"correct":1,"ts":null}`, Event{"a", 0, 1}},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeJSONEvent([]byte(tc.in), numSkills)
			if err != nil || got != tc.want {
				t.Fatalf("DecodeJSONEvent(%s) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
	bad := []struct {
		name, in, reason string
		kind             RejectKind
	}{
		{"not json", `{`, "not a JSON event", RejectMalformed},
		{"array", `[1,2]`, "not a JSON event", RejectMalformed},
		{"empty", ``, "not a JSON event", RejectMalformed},
		{"invalid utf-8", "{\"student_id\":\"\xff\",\"skill_id\":1,\"correct\":1}", "not valid UTF-8", RejectNotUTF8},
		{"no student", `{"skill_id":1,"correct":1}`, "student_id is missing", RejectBadStudentID},
		{"empty student", `{"student_id":"","skill_id":1,"correct":1}`, "student_id is empty", RejectBadStudentID},
		{"no skill", `{"student_id":"a","correct":1}`, "skill_id is missing", RejectMalformed},
		{"skill not integer", `{"student_id":"a","skill_id":1.5,"correct":1}`, "not an integer", RejectMalformed},
		{"skill string", `{"student_id":"a","skill_id":"x","correct":1}`, "not an integer", RejectMalformed},
		{"skill huge", `{"student_id":"a","skill_id":1e30,"correct":1}`, "not an integer", RejectMalformed},
		{"skill too big", `{"student_id":"a","skill_id":124,"correct":1}`, "outside [0,124)", RejectSkillRange},
		{"skill negative", `{"student_id":"a","skill_id":-1,"correct":1}`, "outside [0,124)", RejectSkillRange},
		{"no correct", `{"student_id":"a","skill_id":1}`, "correct is missing", RejectBadCorrect},
		{"correct 2", `{"student_id":"a","skill_id":1,"correct":2}`, "must be 0 or 1", RejectBadCorrect},
		{"skill 7.0", `{"student_id":"a","skill_id":7.0,"correct":1}`, "not an integer", RejectMalformed},
		{"correct false", `{"student_id":"a","skill_id":1,"correct":false}`, "must be 0 or 1", RejectBadCorrect},
		{"bad ts", `{"student_id":"a","skill_id":1,"correct":1,"ts":"yesterday"}`, "ts is", RejectBadTimestamp},
		{"ts object", `{"student_id":"a","skill_id":1,"correct":1,"ts":{}}`, "ts is", RejectBadTimestamp},
		{"sequence record", `{"student_id":"a","skills":[1,2],"correct":[0,1]}`, "sequence record", RejectMalformed},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeJSONEvent([]byte(tc.in), numSkills)
			var rej *RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("DecodeJSONEvent(%q) error = %v; want a *RejectError", tc.in, err)
			}
			if !strings.Contains(rej.Reason, tc.reason) {
				t.Fatalf("reason %q does not mention %q", rej.Reason, tc.reason)
			}
			if rej.Kind != tc.kind {
				t.Fatalf("reason %q: kind %q, want %q", rej.Reason, rej.Kind, tc.kind)
			}
		})
	}
}

func FuzzJSONEvent(f *testing.F) {
	for _, s := range []string{
		`{"student_id":"a","skill_id":1,"correct":0}`,
		`{"student_id":1e3,"skill_id":2.0,"correct":true,"ts":"2024-01-01 00:00:00"}`,
		`{"student_id":"","skill_id":-1,"correct":2,"ts":{}}`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := DecodeJSONEvent(data, 10)
		if err != nil {
			var rej *RejectError
			if !errors.As(err, &rej) || rej.Reason == "" || !rej.Kind.Valid() {
				t.Fatalf("error is not a reject with a reason and a kind: %v (%+v)", err, rej)
			}
			return
		}
		if ev.StudentID == "" || ev.SkillID < 0 || ev.SkillID >= 10 || (ev.Correct != 0 && ev.Correct != 1) {
			t.Fatalf("invalid event returned: %+v", ev)
		}
	})
}
