package sequences

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dktscore/dktscore/batching"
	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/worker"
)

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
