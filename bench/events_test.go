package bench

import (
	"context"
	"math"
	"slices"
	"strconv"
	"testing"

	"github.com/dktscore/dktscore/events"
	"github.com/dktscore/dktscore/io/records"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/scoring"
)

const (
	testModel = "../models/dkt"
	testSplit = "../data/assistments/builder_test.csv"
)

func TestRoundRobinReplayInterleavesStudentsInFileOrder(t *testing.T) {
	seqs := []records.Sequence{{Skills: make([]int32, 2)}, {Skills: make([]int32, 3)}, {Skills: make([]int32, 1)}}
	got := roundRobinReplay(seqs)
	want := []replayEvent{{0, 0}, {1, 0}, {2, 0}, {0, 1}, {1, 1}, {1, 2}}
	if !slices.Equal(got, want) {
		t.Fatalf("replay %v, want %v", got, want)
	}
}

// Row g's carried-state replay does the real work: after it, every student's
// state is the state after their whole history, as emit-state computes it.
// Small polls over two partitions make students span polls and take several
// rounds per poll, so an event applied twice, skipped or out of order shows.
func TestCarriedReplayAppliesEveryEventOnceInOrder(t *testing.T) {
	m, err := model.Load(model.Config{Path: testModel, Sessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	all, err := ReadAll(scoring.Options{Input: testSplit}, m.NumSkills)
	if err != nil {
		t.Fatal(err)
	}
	seqs := slices.Clone(all[:40])
	longest := slices.MaxFunc(all, func(a, b records.Sequence) int { return a.Len() - b.Len() })
	seqs = append(seqs, longest) // 8,214 interactions: alone at the end of the replay

	replay, err := newCarriedReplay(m, seqs, roundRobinReplay(seqs), 2, 37)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := replay.run(); err != nil {
		t.Fatal(err)
	}
	if _, err := replay.run(); err != nil { // a second pass starts from zero states again
		t.Fatal(err)
	}
	// The whole histories stepped as emit-state steps them: a full batch of
	// students, refilled as they finish.
	stepper, err := events.NewStepper(events.ModelEngine(m), events.StepperConfig{MaxRows: 64})
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	want := make([][]float32, len(seqs))
	_, err = stepper.Stream(context.Background(), func() (*events.Student, error) {
		if next == len(seqs) {
			return nil, nil
		}
		s := seqs[next]
		next++
		return &events.Student{ID: strconv.Itoa(next - 1), State: make([]float32, m.StateSize()), Skills: s.Skills, Correct: s.Correct}, nil
	}, func(s *events.Student) error {
		i, _ := strconv.Atoi(s.ID)
		want[i] = s.State
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	size := m.StateSize()
	for i := range seqs {
		got := replay.partitions[i%2].states[i*size : (i+1)*size]
		for k := range got {
			if d := math.Abs(float64(got[k] - want[i][k])); d > 1e-5 {
				t.Fatalf("student %d (%d interactions): replayed state[%d] = %v, whole-history state %v", i, seqs[i].Len(), k, got[k], want[i][k])
			}
		}
	}
	if runs := replay.stepRuns(); runs < longest.Len() {
		t.Fatalf("%d step runs for a student with %d interactions", runs, longest.Len())
	}
}
