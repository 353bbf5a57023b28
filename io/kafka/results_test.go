package kafka

import (
	"bytes"
	"strconv"
	"testing"
)

func TestDeadLetterKeepsTheMessageAndNamesTheReason(t *testing.T) {
	original := Message{Topic: "in", Partition: 1, Offset: 7, Key: []byte("k"), Value: []byte("{broken"),
		Headers: map[string][]byte{"trace": []byte("abc")}}
	got := DeadLetter(original, "dlq", "not a JSON record")
	if got.Topic != "dlq" || string(got.Key) != "k" || string(got.Value) != "{broken" {
		t.Fatalf("dead letter %+v: want topic dlq, key k and the original value", got)
	}
	for k, want := range map[string]string{"trace": "abc", HeaderReason: "not a JSON record", HeaderSourceTopic: "in",
		HeaderSourcePartition: "1", HeaderSourceOffset: "7"} {
		if string(got.Headers[k]) != want {
			t.Errorf("header %s = %q, want %q", k, got.Headers[k], want)
		}
	}
	if _, ok := got.Headers[HeaderTruncatedFrom]; ok {
		t.Error("a small value is marked truncated")
	}
	if _, ok := original.Headers[HeaderReason]; ok {
		t.Error("DeadLetter changed the original message's headers")
	}
}

// The dead letter of an oversized input fits the broker's default limit.
func TestDeadLetterCutsAnOversizedValue(t *testing.T) {
	value := bytes.Repeat([]byte("x"), 2<<20)
	got := DeadLetter(Message{Topic: "in", Value: value}, "dlq", "message of 2097152 bytes exceeds the limit")
	if len(got.Value) != MaxDeadLetterBytes || string(got.Headers[HeaderTruncatedFrom]) != strconv.Itoa(len(value)) {
		t.Fatalf("dead letter of %d bytes with truncated-from %q, want %d and %d", len(got.Value), got.Headers[HeaderTruncatedFrom], MaxDeadLetterBytes, len(value))
	}
	if _, err := toRecord(got, DefaultMaxMessageBytes); err != nil {
		t.Fatalf("the cut dead letter does not fit the default limit: %v", err)
	}
}

func TestResultMessageHeaders(t *testing.T) {
	got := ResultMessage("out", "dkt", "dkt/3", 12, []byte("arrow"))
	if got.Topic != "out" || got.Key != nil || string(got.Value) != "arrow" {
		t.Fatalf("result message %+v", got)
	}
	for k, want := range map[string]string{HeaderContentType: ArrowStreamType, HeaderModel: "dkt", HeaderModelVersion: "dkt/3", HeaderRows: "12"} {
		if string(got.Headers[k]) != want {
			t.Errorf("header %s = %q, want %q", k, got.Headers[k], want)
		}
	}
}
