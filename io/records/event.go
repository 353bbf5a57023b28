package records

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// Event is one interaction, the input unit of event mode: a student answered
// one question of one skill.
type Event struct {
	StudentID string
	SkillID   int32
	Correct   int8
}

// jsonEvent is one event record; unknown fields are ignored. Values stay raw
// so that a bad one is reported as written.
type jsonEvent struct {
	StudentID json.RawMessage `json:"student_id"`
	SkillID   json.RawMessage `json:"skill_id"`
	Correct   json.RawMessage `json:"correct"`
	TS        json.RawMessage `json:"ts"`
	// A sequence record sent to the events topic by mistake has these.
	Skills json.RawMessage `json:"skills"`
}

const jsonEventShape = `{"student_id": "...", "skill_id": 12, "correct": 0 or 1, "ts": optional}`

// DecodeJSONEvent decodes and validates one event record (a Kafka message
// value in event mode). A bad record gives a *RejectError with Record -1 and
// no Input, whose Reason says how to fix it; callers fill in Input.
func DecodeJSONEvent(data []byte, numSkills int) (Event, error) {
	ev, p := decodeJSONEvent(data, numSkills)
	if p != nil {
		return Event{}, &RejectError{Record: -1, StudentID: ev.StudentID, Kind: p.kind, Reason: p.reason}
	}
	return ev, nil
}

func decodeJSONEvent(data []byte, numSkills int) (Event, *problem) {
	// encoding/json would turn invalid UTF-8 into U+FFFD silently, changing a
	// student id behind the producer's back.
	if !utf8.Valid(data) {
		return Event{}, problemf(RejectNotUTF8, "event is not valid UTF-8 (first bad byte at offset %d); encode it as UTF-8 JSON %s", firstInvalidUTF8(data), jsonEventShape)
	}
	var rec jsonEvent
	if err := json.Unmarshal(data, &rec); err != nil {
		return Event{}, problemf(RejectMalformed, "not a JSON event %s: %v", jsonEventShape, err)
	}
	var ev Event
	id, p := jsonStudentID(rec.StudentID)
	if p != nil {
		return ev, p
	}
	ev.StudentID = id
	if len(rec.Skills) > 0 && len(rec.SkillID) == 0 {
		return ev, problemf(RejectMalformed, "this is a sequence record (it has \"skills\"); event mode takes one interaction per message %s"+
			", or run serve with DKTSCORE_MODE=sequences for whole histories", jsonEventShape)
	}
	skill := bytes.TrimSpace(rec.SkillID)
	if len(skill) == 0 || bytes.Equal(skill, []byte("null")) {
		return ev, problemf(RejectMalformed, "skill_id is missing: every event needs the skill of the answered question, %s", jsonEventShape)
	}
	v, ok := parseInteger(skill)
	if !ok {
		return ev, problemf(RejectMalformed, "skill_id is %s, not an integer", quoteSample(skill))
	}
	if v < 0 || v >= int64(numSkills) {
		return ev, skillOutOfRange("", v, "in skill_id", numSkills)
	}
	ev.SkillID = int32(v)
	correct := bytes.TrimSpace(rec.Correct)
	if len(correct) == 0 || bytes.Equal(correct, []byte("null")) {
		return ev, problemf(RejectBadCorrect, "correct is missing: every event needs correct 0 or 1, %s", jsonEventShape)
	}
	flag, ok := parseFlag(correct)
	if !ok {
		return ev, problemf(RejectBadCorrect, "correct is %s; it must be 0 or 1", quoteSample(correct))
	}
	ev.Correct = flag
	// ts is optional and not used for ordering (the partition's offset order
	// is the event order), but a present one must be a time, so that a
	// producer bug shows up here rather than downstream.
	if ts := bytes.TrimSpace(rec.TS); len(ts) > 0 && !bytes.Equal(ts, []byte("null")) {
		if !validEventTime(ts) {
			return ev, problemf(RejectBadTimestamp, "ts is %s; give an epoch number or an RFC 3339 string, or leave ts out", quoteSample(ts))
		}
	}
	return ev, nil
}

// validEventTime accepts a JSON number or a JSON string holding a number or
// an RFC 3339 time, as the long CSV format does.
func validEventTime(raw []byte) bool {
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return false
		}
		raw = []byte(s)
	}
	_, ok := parseTimestamp(raw)
	return ok
}
