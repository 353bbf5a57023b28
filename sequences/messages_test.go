package sequences

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/dktscore/dktscore/internal/rejectstest"
	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/io/records"
	"github.com/dktscore/dktscore/worker"
)

const testSkills = 4

type recordingWriter struct {
	mu   sync.Mutex
	sent []kafka.Message
}

func (w *recordingWriter) Produce(_ context.Context, m kafka.Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sent = append(w.sent, m)
	return nil
}

func TestDecodeMessage(t *testing.T) {
	src := kafka.Message{Topic: "in", Partition: 2, Offset: 41}
	tests := []struct {
		name, value, reason string
	}{
		{"valid", `{"student_id": "a", "skills": [1, 3], "correct": [1, 0]}`, ""},
		{"oversize", `{"student_id": "a", "skills": [1, 1, 1, 1, 1, 1, 1, 1], "correct": [1, 1, 1, 1, 1, 1, 1, 1]}`, "exceeds the 64-byte limit"},
		{"out of range", `{"student_id": "a", "skills": [4], "correct": [1]}`, "skill id 4 at index 0 is outside [0,4)"},
		{"not json", `{`, "not a JSON record"},
		{"empty", ``, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src.Value = []byte(tt.value)
			w := DecodeMessage(src, testSkills, 64)
			if w.Source.(kafka.Message).Offset != 41 {
				t.Fatal("work lost its source position")
			}
			if tt.name == "valid" {
				if w.Reject != nil || w.Seq.StudentID != "a" || len(w.Seq.Skills) != 2 {
					t.Fatalf("valid record gave %+v", w)
				}
				return
			}
			if w.Reject == nil {
				t.Fatalf("%q was accepted", tt.value)
			}
			if !strings.Contains(w.Reject.Reason, tt.reason) || w.Reject.Input != "in[2]@41" {
				t.Fatalf("reject %+v, want reason containing %q and input in[2]@41", w.Reject, tt.reason)
			}
		})
	}
}

func TestDecodeMessageSetsTheRejectKind(t *testing.T) {
	for _, c := range rejectstest.Sequences {
		w := DecodeMessage(kafka.Message{Topic: "in", Value: []byte(c.Value)}, rejectstest.NumSkills, rejectstest.MaxBytes)
		if w.Reject == nil {
			t.Fatalf("%q was not rejected", c.Value)
		}
		if w.Reject.Kind != c.Kind {
			t.Errorf("%q: kind %q (reason %q), want %s", c.Value, w.Reject.Kind, w.Reject.Reason, c.Kind)
		}
	}
}

// A reason quotes the record's bad value; a value that spells another kind's
// wording must not change the kind, which is where decoding failed.
func TestRejectKindIsWhereTheRecordFailed(t *testing.T) {
	cases := []struct {
		value string
		kind  records.RejectKind
	}{
		{`{"student_id": "a", "skills": ["timestamp"], "correct": [1]}`, records.RejectMalformed},
		{`{"student_id": "a", "skills": ["must be 0 or 1"], "correct": [1]}`, records.RejectMalformed},
		{`{"student_id": "a", "skills": [1], "correct": ["byte limit"]}`, records.RejectBadCorrect},
		{`{"student_id": "a", "skills": [1], "correct": ["is outside [0, \" reappears"]}`, records.RejectBadCorrect},
		{`{"student_id": {"timestamp": 1}, "skills": [1], "correct": [1]}`, records.RejectBadStudentID},
		{`{"student_id": ["length mismatch", "empty sequence"], "skills": [1], "correct": [1]}`, records.RejectBadStudentID},
	}
	for _, c := range cases {
		w := DecodeMessage(kafka.Message{Topic: "in", Value: []byte(c.value)}, testSkills, 1000)
		if w.Reject == nil {
			t.Fatalf("%q was not rejected", c.value)
		}
		if w.Reject.Kind != c.kind {
			t.Errorf("%q: kind %q (reason %q), want %s", c.value, w.Reject.Kind, w.Reject.Reason, c.kind)
		}
	}
}

func TestDeadLetterKeepsOriginalBytesAndNamesTheReason(t *testing.T) {
	w := &recordingWriter{}
	original := kafka.Message{Topic: "in", Partition: 1, Offset: 7, Key: []byte("k"), Value: []byte("{broken"),
		Headers: map[string][]byte{"trace": []byte("abc")}}
	work := DecodeMessage(original, testSkills, 0)
	if err := (DeadLetterSink{Writer: w, Topic: "dlq"}).Reject(context.Background(), work); err != nil {
		t.Fatal(err)
	}
	got := w.sent[0]
	if got.Topic != "dlq" || string(got.Key) != "k" || string(got.Value) != "{broken" {
		t.Fatalf("dead letter %+v: want topic dlq, key k, the original value", got)
	}
	for k, want := range map[string]string{"trace": "abc", kafka.HeaderSourceTopic: "in", kafka.HeaderSourcePartition: "1",
		kafka.HeaderSourceOffset: "7"} {
		if string(got.Headers[k]) != want {
			t.Errorf("header %s = %q, want %q", k, got.Headers[k], want)
		}
	}
	if !strings.Contains(string(got.Headers[kafka.HeaderReason]), "not a JSON record") {
		t.Errorf("reason header %q", got.Headers[kafka.HeaderReason])
	}
}

func TestArrowMessageCarriesRowsAndSourcePositions(t *testing.T) {
	w := &recordingWriter{}
	sink := ArrowMessageSink{Writer: w, Topic: "out", Model: "dkt",
		Output: columnar.Config{NumSkills: testSkills, ModelVersion: "dkt/1"}}
	results := []worker.Result{
		{StudentID: "a", SeqLen: 3, Mastery: []float32{0.1, 0.2, 0.3, 0.4}, Source: kafka.Message{Topic: "in", Partition: 0, Offset: 5}},
		{StudentID: "b", SeqLen: 1, Mastery: []float32{0.5, 0.6, 0.7, 0.8}, Source: kafka.Message{Topic: "in", Partition: 2, Offset: 9}},
	}
	if err := sink.Write(context.Background(), results); err != nil {
		t.Fatal(err)
	}
	msg := w.sent[0]
	if string(msg.Headers[kafka.HeaderContentType]) != kafka.ArrowStreamType || string(msg.Headers[kafka.HeaderRows]) != "2" {
		t.Fatalf("headers %v", msg.Headers)
	}
	r, err := ipc.NewReader(bytes.NewReader(msg.Value))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	if !r.Next() {
		t.Fatal("no record batch in the message")
	}
	rec := r.RecordBatch()
	offsets := rec.Column(rec.Schema().FieldIndices("source_offset")[0]).(*array.Int64)
	partitions := rec.Column(rec.Schema().FieldIndices("source_partition")[0]).(*array.Int32)
	if rec.NumRows() != 2 || offsets.Value(1) != 9 || partitions.Value(1) != 2 {
		t.Fatalf("rows %d, offsets %v, partitions %v", rec.NumRows(), offsets, partitions)
	}
}

// Results scored by two versions (a reload between batches) go out as one
// message per version, so each message's header and rows agree.
func TestArrowMessagePerModelVersion(t *testing.T) {
	w := &recordingWriter{}
	sink := ArrowMessageSink{Writer: w, Topic: "out", Model: "dkt",
		Output: columnar.Config{NumSkills: testSkills, ModelVersion: "dkt/1"}}
	mastery := []float32{0.1, 0.2, 0.3, 0.4}
	var results []worker.Result
	for i, v := range []string{"dkt/1", "dkt/1", "dkt/2", "dkt/2", "dkt/2"} {
		results = append(results, worker.Result{StudentID: fmt.Sprint(i), SeqLen: 1, Mastery: mastery, ModelVersion: v,
			Source: kafka.Message{Topic: "in", Offset: int64(i)}})
	}
	if err := sink.Write(context.Background(), results); err != nil {
		t.Fatal(err)
	}
	if len(w.sent) != 2 {
		t.Fatalf("sent %d messages, want one per version (2)", len(w.sent))
	}
	for i, want := range []struct{ version, rows string }{{"dkt/1", "2"}, {"dkt/2", "3"}} {
		msg := w.sent[i]
		if got := string(msg.Headers[kafka.HeaderModelVersion]); got != want.version || string(msg.Headers[kafka.HeaderRows]) != want.rows {
			t.Fatalf("message %d: version header %q with %s rows, want %q with %s", i, got, msg.Headers[kafka.HeaderRows], want.version, want.rows)
		}
		r, err := ipc.NewReader(bytes.NewReader(msg.Value))
		if err != nil {
			t.Fatal(err)
		}
		r.Next()
		rec := r.RecordBatch()
		versions := rec.Column(rec.Schema().FieldIndices("model_version")[0]).(*array.String)
		for row := range int(rec.NumRows()) {
			if versions.Value(row) != want.version {
				t.Fatalf("message %d row %d: model_version %q, want %q", i, row, versions.Value(row), want.version)
			}
		}
		r.Release()
	}
}
