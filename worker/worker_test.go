package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dktscore/dktscore/batching"
	"github.com/dktscore/dktscore/io/records"
)

const testSkills = 4

// sliceSource hands out works in order and records every ack.
type sliceSource struct {
	works []Work
	next  int
	mu    sync.Mutex
	acks  map[int][]error // work index → errors it was acked with (one entry expected)
	block chan struct{}   // when set, Read blocks after the works run out until closed
	empty chan struct{}   // closed (if set) once every work was handed out
}

func (s *sliceSource) Read(ctx context.Context) (Work, Ack, error) {
	if s.next == len(s.works) {
		if s.empty != nil {
			close(s.empty)
			s.empty = nil
		}
		if s.block != nil {
			select {
			case <-s.block:
			case <-ctx.Done():
				return Work{}, nil, ctx.Err()
			}
		}
		return Work{}, nil, io.EOF
	}
	i := s.next
	s.next++
	return s.works[i], func(err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.acks[i] = append(s.acks[i], err)
	}, nil
}

// ackedOnce checks every work handed out was acked exactly once: with nil when
// want is nil, else with an error (want itself unless the item was cut short
// by the abort that want caused).
func (s *sliceSource) ackedOnce(t *testing.T, want error) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.next {
		got := s.acks[i]
		if len(got) != 1 {
			t.Fatalf("work %d acked %d times, want once", i, len(got))
		}
		if (want == nil) != (got[0] == nil) || (want != nil && !errors.Is(got[0], want) && !errors.Is(got[0], context.Canceled)) {
			t.Fatalf("work %d acked with %v, want %v", i, got[0], want)
		}
	}
}

// sumEngine stands in for the model in tests of the pipeline's bookkeeping:
// pred_all[b, t, k] = (number of correct answers in steps 0..t) + k/10, so every
// output is checkable by hand.
type sumEngine struct{ fail error }

// testModelVersion is what sumEngine reports as the version that scored a batch.
const testModelVersion = "sum/1"

func (sumEngine) NumSkills() int { return testSkills }

func (e sumEngine) Predict(_ context.Context, b *batching.Batch, out EngineOutputs) (string, error) {
	if e.fail != nil {
		return "", e.fail
	}
	row := 0
	for i, n := range b.SeqLen {
		correct := float32(0)
		for t := range int(n) {
			correct += float32(b.Correct[i*b.Steps+t])
			for k := range testSkills {
				v := correct + float32(k)/10
				if out.Steps != nil {
					out.Steps[(row+t)*testSkills+k] = v
				}
				if t == int(n)-1 {
					out.Last[i*testSkills+k] = v
				}
			}
			out.Next[row+t] = correct / float32(t+1)
		}
		row += int(n)
	}
	return testModelVersion, nil
}

type memorySink struct {
	mu      sync.Mutex
	results map[string]Result
	fail    error
}

func (s *memorySink) Write(_ context.Context, rs []Result) error {
	if s.fail != nil {
		return s.fail
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rs {
		s.results[r.StudentID] = r
	}
	return nil
}

type memoryRejects struct{ got []*records.RejectError }

func (r *memoryRejects) Reject(_ context.Context, w Work) error {
	r.got = append(r.got, w.Reject)
	return nil
}

func testConfig() Config {
	return Config{
		Batching: batching.Config{NumSkills: testSkills, MaxBatchSize: 4, MaxDelay: 5 * time.Millisecond, MaxPaddedSteps: 256},
		Engines:  2,
	}
}

func randomWorks(n int, seed int64) []Work {
	rng := rand.New(rand.NewSource(seed))
	works := make([]Work, n)
	for i := range works {
		length := 1 + rng.Intn(40)
		seq := records.Sequence{StudentID: fmt.Sprint("s", i)}
		for range length {
			seq.Skills = append(seq.Skills, int32(rng.Intn(testSkills)))
			seq.Correct = append(seq.Correct, int8(rng.Intn(2)))
		}
		works[i] = Work{Seq: seq, Source: i}
	}
	return works
}

func correctCount(c []int8) float32 {
	n := float32(0)
	for _, v := range c {
		n += float32(v)
	}
	return n
}

func TestRunScoresEveryStudentAndAcksOnceAfterTheSink(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	works := randomWorks(200, 1)
	works = append(works, Work{Reject: &records.RejectError{Line: 7, Reason: "skill 999 outside [0, 4)"}})
	src := &sliceSource{works: works, acks: map[int][]error{}}
	sink := &memorySink{results: map[string]Result{}}
	rejects := &memoryRejects{}
	cfg := testConfig()
	cfg.Trajectory = true
	sum, err := Run(ctx, cfg, src, sumEngine{}, sink, rejects, nil)
	if err != nil {
		t.Fatal(err)
	}
	src.ackedOnce(t, nil)
	if sum.Students != 200 || sum.Rejected != 1 || len(rejects.got) != 1 {
		t.Fatalf("summary %+v, rejects %d; want 200 students, 1 reject", sum, len(rejects.got))
	}
	for i, w := range works[:200] {
		r, ok := sink.results[w.Seq.StudentID]
		if !ok {
			t.Fatalf("student %s not written", w.Seq.StudentID)
		}
		if r.Source != i || r.SeqLen != len(w.Seq.Skills) || r.WindowStart != 0 || r.ModelVersion != testModelVersion {
			t.Fatalf("student %s: result %+v", w.Seq.StudentID, r)
		}
		want := correctCount(w.Seq.Correct)
		for k, v := range r.Mastery {
			if v != want+float32(k)/10 {
				t.Fatalf("student %s mastery[%d] = %v, want %v (rows mixed up?)", w.Seq.StudentID, k, v, want+float32(k)/10)
			}
		}
		if got := r.Trajectory[0]; got != float32(w.Seq.Correct[0]) {
			t.Fatalf("student %s trajectory starts at %v, want %v", w.Seq.StudentID, got, w.Seq.Correct[0])
		}
	}
	if sum.Interactions != sum.RealSteps || sum.PaddingEfficiency() <= 0 || sum.PaddingEfficiency() > 1 {
		t.Fatalf("inconsistent summary %+v", sum)
	}
}

func TestRunWindowsLongHistories(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	seq := records.Sequence{StudentID: "long", Skills: []int32{0, 1, 2, 3, 0, 1}, Correct: []int8{1, 1, 1, 0, 0, 1}}
	src := &sliceSource{works: []Work{{Seq: seq}}, acks: map[int][]error{}}
	sink := &memorySink{results: map[string]Result{}}
	cfg := testConfig()
	cfg.MaxSteps = 3
	sum, err := Run(ctx, cfg, src, sumEngine{}, sink, &memoryRejects{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := sink.results["long"]
	// the last 3 interactions have one correct answer
	if r.SeqLen != 3 || r.WindowStart != 3 || r.Mastery[0] != 1 || sum.Windowed != 1 || sum.Interactions != 3 {
		t.Fatalf("windowed result %+v, summary %+v", r, sum)
	}
}

func TestEngineFailureAcksEveryItemWithTheError(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	boom := errors.New("device lost")
	src := &sliceSource{works: randomWorks(50, 2), acks: map[int][]error{}}
	_, err := Run(ctx, testConfig(), src, sumEngine{fail: boom}, &memorySink{results: map[string]Result{}}, &memoryRejects{}, nil)
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the engine's error", err)
	}
	src.ackedOnce(t, boom)
}

// longFails fails every batch that holds a sequence longer than limit.
type longFails struct {
	sumEngine
	limit int
}

func (e longFails) Predict(ctx context.Context, b *batching.Batch, out EngineOutputs) (string, error) {
	if b.Steps > e.limit {
		return "", errors.New("out of device memory")
	}
	return e.sumEngine.Predict(ctx, b, out)
}

// With FailBatchOnly a failing batch fails its own items; the others are
// scored and the run goes on.
func TestFailBatchOnlyKeepsTheRunGoing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	works := randomWorks(60, 3)
	src := &sliceSource{works: works, acks: map[int][]error{}}
	sink := &memorySink{results: map[string]Result{}}
	cfg := testConfig()
	cfg.FailBatchOnly = true
	if _, err := Run(ctx, cfg, src, longFails{limit: 10}, sink, &memoryRejects{}, nil); err != nil {
		t.Fatalf("Run = %v, want the run to go on", err)
	}
	failed, scored := 0, 0
	for i, w := range works {
		acks := src.acks[i]
		if len(acks) != 1 {
			t.Fatalf("work %d acked %d times", i, len(acks))
		}
		_, inSink := sink.results[w.Seq.StudentID]
		switch {
		case acks[0] != nil && !inSink:
			failed++
		case acks[0] == nil && inSink:
			scored++
		default:
			t.Fatalf("work %d (len %d): ack %v, in sink %t", i, len(w.Seq.Skills), acks[0], inSink)
		}
	}
	if failed == 0 || scored == 0 {
		t.Fatalf("%d failed, %d scored; want both (long sequences fail, short ones are scored)", failed, scored)
	}
}

func TestSinkFailureAcksWithTheErrorAndNothingAsDone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := errors.New("disk full")
	src := &sliceSource{works: randomWorks(50, 3), acks: map[int][]error{}}
	_, err := Run(ctx, testConfig(), src, sumEngine{}, &memorySink{fail: full}, &memoryRejects{}, nil)
	if !errors.Is(err, full) {
		t.Fatalf("Run = %v, want the sink's error", err)
	}
	for i := range src.next {
		if errs := src.acks[i]; len(errs) != 1 || errs[0] == nil {
			t.Fatalf("work %d acked %v; a result that was not written must not be acked as done", i, errs)
		}
	}
}

// endlessSource never ends, like a Kafka topic.
type endlessSource struct{ reads atomic.Int64 }

func (s *endlessSource) Read(ctx context.Context) (Work, Ack, error) {
	if err := ctx.Err(); err != nil {
		return Work{}, nil, err
	}
	n := s.reads.Add(1)
	return Work{Seq: records.Sequence{StudentID: fmt.Sprint(n), Skills: []int32{1, 2}, Correct: []int8{1, 0}}}, func(error) {}, nil
}

func TestSinkFailureStopsAnEndlessSource(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := errors.New("broker rejected the write")
	src := &endlessSource{}
	_, err := Run(ctx, testConfig(), src, sumEngine{}, &memorySink{fail: full}, &memoryRejects{}, nil)
	if !errors.Is(err, full) {
		t.Fatalf("Run = %v, want it to stop with the sink's error", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run kept reading after the sink failed, until the test deadline")
	}
}

// Stopping (SIGTERM) ends fetching but everything already read is scored,
// written and acked.
func TestStopDrainsWhatWasRead(t *testing.T) {
	deadline, cancelDeadline := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelDeadline()
	ctx, stop := context.WithCancel(deadline)
	allRead := make(chan struct{})
	src := &sliceSource{works: randomWorks(30, 4), acks: map[int][]error{}, block: make(chan struct{}), empty: allRead}
	sink := &memorySink{results: map[string]Result{}}
	cfg := testConfig()
	cfg.Batching.MaxDelay = time.Hour // nothing leaves the batcher unless drained
	progress := new(Progress)
	done := make(chan error)
	go func() {
		_, err := Run(ctx, cfg, src, sumEngine{}, sink, &memoryRejects{}, progress)
		done <- err
	}()
	select {
	case <-allRead:
	case <-deadline.Done():
		t.Fatal("source was not drained")
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled after a stop", err)
	}
	src.ackedOnce(t, nil)
	if len(sink.results) != 30 {
		t.Fatalf("%d results written, want all 30 read before the stop", len(sink.results))
	}
}

func TestConfigRejectsEveryProblem(t *testing.T) {
	err := Config{Engines: 0, MaxSteps: -1}.validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"engines = 0", "max steps = -1", "batching"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestAUCMatchesPairwiseDefinition(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	auc := NewAUC()
	var pos, neg []float32
	for range 200 {
		n := 2 + rng.Intn(20)
		next := make([]float32, n)
		correct := make([]int8, n)
		for i := range next {
			next[i] = float32(math.Round(rng.Float64()*100) / 100) // ties on purpose
			correct[i] = int8(rng.Intn(2))
		}
		auc.Add(next, correct)
		for t := 0; t+1 < n; t++ {
			if correct[t+1] == 1 {
				pos = append(pos, next[t])
			} else {
				neg = append(neg, next[t])
			}
		}
	}
	var wins float64
	for _, p := range pos {
		for _, q := range neg {
			switch {
			case p > q:
				wins++
			case p == q:
				wins += 0.5
			}
		}
	}
	want := wins / float64(len(pos)*len(neg))
	got, ok := auc.Value()
	if !ok || math.Abs(got-want) > 1e-9 {
		t.Fatalf("AUC = %v (%v), pairwise %v", got, ok, want)
	}
	if _, ok := NewAUC().Value(); ok {
		t.Fatal("an empty AUC reported a value")
	}
}
