package sequences

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/dktscore/dktscore/batching"
	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/worker"
)

const testSkills = 4

// fixedEngine stands in for the model where only the counts of results
// matter: every student gets the same mastery, unless the engine fails.
type fixedEngine struct{ fail error }

func (fixedEngine) NumSkills() int { return testSkills }

func (e fixedEngine) Predict(_ context.Context, _ *batching.Batch, out worker.EngineOutputs) (string, error) {
	if e.fail != nil {
		return "", e.fail
	}
	for i := range out.Last {
		out.Last[i] = 0.5
	}
	return "fixed/1", nil
}

func testConfig() worker.Config {
	return worker.Config{
		Batching: batching.Config{NumSkills: testSkills, MaxBatchSize: 4, MaxDelay: 5 * time.Millisecond, MaxPaddedSteps: 256},
		Engines:  2,
	}
}

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

// badMessages are hostile Kafka values whose rejects come from the real
// decoder (DecodeMessage), one or more per kind: worker.RejectKind must
// name each reason's kind.
var badMessages = []struct {
	value string
	kind  string
}{
	{`{"student_id": "a", "skills": [1, 2], "correct": [1]}`, worker.RejectLengthMismatch},
	{`{"student_id": "b", "skills": [1, 2], "correct": [1, 0`, worker.RejectMalformed},
	{`not json at all`, worker.RejectMalformed},
	{`{"student_id": "c", "skills": ["x"], "correct": [1]}`, worker.RejectMalformed},
	{`{"student_id": "d", "skills": [4], "correct": [1]}`, worker.RejectSkillRange},
	{`{"student_id": "e", "skills": [-1], "correct": [1]}`, worker.RejectSkillRange},
	{`{"student_id": "f", "skills": [1], "correct": [2]}`, worker.RejectBadCorrect},
	{`{"student_id": "", "skills": [1], "correct": [1]}`, worker.RejectBadStudentID},
	{`{"skills": [1], "correct": [1]}`, worker.RejectBadStudentID},
	{`{"student_id": [1], "skills": [1], "correct": [1]}`, worker.RejectBadStudentID},
	{`{"student_id": "g", "skills": [], "correct": []}`, worker.RejectEmpty},
	{"{\"student_id\": \"\xff\", \"skills\": [1], \"correct\": [1]}", worker.RejectNotUTF8},
	{`{"student_id": "h", "skills": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], "correct": [1]}`, worker.RejectTooLarge},
}

const badMessageMaxBytes = 100 // the too_large case above is longer

func TestRejectKindOfEveryMessageReason(t *testing.T) {
	for _, c := range badMessages {
		w := DecodeMessage(kafka.Message{Topic: "in", Value: []byte(c.value)}, testSkills, badMessageMaxBytes)
		if w.Reject == nil {
			t.Fatalf("%q was not rejected", c.value)
		}
		if got := worker.RejectKind(w.Reject.Reason); got != c.kind {
			t.Errorf("worker.RejectKind(%q) = %s, want %s", w.Reject.Reason, got, c.kind)
		}
	}
}

// A reason quotes the record's bad value; a value that spells another kind's
// phrase must not decide the counted kind.
func TestRejectKindIgnoresTheQuotedValue(t *testing.T) {
	cases := []struct {
		value string
		kind  string
	}{
		{`{"student_id": "a", "skills": ["timestamp"], "correct": [1]}`, worker.RejectMalformed},
		{`{"student_id": "a", "skills": ["must be 0 or 1"], "correct": [1]}`, worker.RejectMalformed},
		{`{"student_id": "a", "skills": [1], "correct": ["byte limit"]}`, worker.RejectBadCorrect},
		{`{"student_id": "a", "skills": [1], "correct": ["is outside [0, \" reappears"]}`, worker.RejectBadCorrect},
		{`{"student_id": {"timestamp": 1}, "skills": [1], "correct": [1]}`, worker.RejectBadStudentID},
		{`{"student_id": ["length mismatch", "empty sequence"], "skills": [1], "correct": [1]}`, worker.RejectBadStudentID},
	}
	for _, c := range cases {
		w := DecodeMessage(kafka.Message{Topic: "in", Value: []byte(c.value)}, testSkills, 1000)
		if w.Reject == nil {
			t.Fatalf("%q was not rejected", c.value)
		}
		if got := worker.RejectKind(w.Reject.Reason); got != c.kind {
			t.Errorf("worker.RejectKind(%q) = %s, want %s", w.Reject.Reason, got, c.kind)
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

// scriptedTransactor hands out polls in order, then blocks until ctx ends.
type scriptedTransactor struct {
	recordingWriter
	polls   [][]kafka.Message
	ends    []bool
	endErrs []error
}

func (s *scriptedTransactor) Poll(ctx context.Context) ([]kafka.Message, error) {
	if len(s.polls) == 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	p := s.polls[0]
	s.polls = s.polls[1:]
	return p, nil
}

func (s *scriptedTransactor) End(_ context.Context, commit bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ends = append(s.ends, commit)
	if len(s.endErrs) > 0 {
		err := s.endErrs[0]
		s.endErrs = s.endErrs[1:]
		return err
	}
	return nil
}

func TestRunTransactionsCommitsEachPollWithItsOutputs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msg := func(offset int64, value string) kafka.Message {
		return kafka.Message{Topic: "in", Offset: offset, Value: []byte(value)}
	}
	good := `{"student_id": "a", "skills": [1, 2], "correct": [1, 1]}`
	tr := &scriptedTransactor{
		polls:   [][]kafka.Message{{msg(0, good), msg(1, "bad")}, {msg(2, good)}},
		endErrs: []error{kafka.ErrAborted}, // the first transaction is lost to a rebalance: keep going
	}
	sinks := func(w MessageWriter) (worker.Sink, worker.RejectSink) {
		return ArrowMessageSink{Writer: w, Topic: "out", Output: columnar.Config{NumSkills: testSkills, ModelVersion: "m/1"}},
			DeadLetterSink{Writer: w, Topic: "dlq"}
	}
	decode := func(m kafka.Message) worker.Work { return DecodeMessage(m, testSkills, 0) }
	done := make(chan error)
	go func() {
		done <- RunTransactions(ctx, testConfig(), tr, decode, fixedEngine{}, sinks, new(worker.Progress))
	}()
	deadline := time.After(20 * time.Second)
	for {
		tr.mu.Lock()
		n := len(tr.ends)
		tr.mu.Unlock()
		if n == 2 {
			break
		}
		select {
		case <-deadline:
			t.Fatal("transactions did not finish")
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunTransactions = %v", err)
	}
	if len(tr.ends) != 2 || !tr.ends[0] || !tr.ends[1] {
		t.Fatalf("ends %v, want two commits", tr.ends)
	}
	var topics []string
	for _, m := range tr.sent {
		topics = append(topics, m.Topic)
	}
	if strings.Count(strings.Join(topics, ","), "out") != 2 || strings.Count(strings.Join(topics, ","), "dlq") != 1 {
		t.Fatalf("produced to %v, want 2 results and 1 dead letter", topics)
	}
}

func TestRunTransactionsAbortsWhenScoringFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr := &scriptedTransactor{polls: [][]kafka.Message{{{Topic: "in", Value: []byte(`{"student_id": "a", "skills": [1], "correct": [1]}`)}}}}
	boom := errors.New("engine down")
	sinks := func(w MessageWriter) (worker.Sink, worker.RejectSink) {
		return ArrowMessageSink{Writer: w, Topic: "out", Output: columnar.Config{NumSkills: testSkills, ModelVersion: "m/1"}},
			DeadLetterSink{Writer: w, Topic: "dlq"}
	}
	decode := func(m kafka.Message) worker.Work { return DecodeMessage(m, testSkills, 0) }
	err := RunTransactions(ctx, testConfig(), tr, decode, fixedEngine{fail: boom}, sinks, new(worker.Progress))
	if !errors.Is(err, boom) || len(tr.ends) != 1 || tr.ends[0] {
		t.Fatalf("RunTransactions = %v with ends %v; want the engine error and one abort", err, tr.ends)
	}
}
