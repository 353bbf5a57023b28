package events

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// studentOf is a student with the given (skill, correct) interactions.
func studentOf(id string, interactions [][2]int32) *Student {
	st := &Student{ID: id, State: make([]float32, 2)}
	for _, ev := range interactions {
		st.Skills = append(st.Skills, ev[0])
		st.Correct = append(st.Correct, int8(ev[1]))
	}
	return st
}

func TestStepperAppliesEachStudentsInteractionsInOrder(t *testing.T) {
	histories := map[string][][2]int32{
		"a": {{1, 1}, {3, 0}, {0, 1}}, "b": {{2, 0}}, "c": {{3, 1}, {1, 0}},
	}
	var students []*Student
	for _, id := range []string{"a", "b", "c"} {
		st := studentOf(id, histories[id])
		st.Mastery = make([]float32, len(st.Skills)*eventSkills)
		students = append(students, st)
	}
	engine := &hashEngine{}
	stepper, err := NewStepper(engine, StepperConfig{})
	if err != nil {
		t.Fatal(err)
	}
	stats, err := stepper.Apply(context.Background(), students)
	if err != nil {
		t.Fatal(err)
	}
	if stats != (StepStats{Runs: 3, Rows: 6}) || fmt.Sprint(runSizes(engine)) != "[3 2 1]" {
		t.Errorf("stats %+v, runs of %v; want 3 runs of [3 2 1] rows", stats, runSizes(engine))
	}
	for _, st := range students {
		masteries, final := replay(histories[st.ID])
		if fmt.Sprint(st.State) != fmt.Sprint(final) {
			t.Errorf("%s: state %v, want %v", st.ID, st.State, final)
		}
		for k, want := range masteries {
			if got := st.Mastery[k*eventSkills : (k+1)*eventSkills]; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s after interaction %d: mastery %v, want %v", st.ID, k, got, want)
			}
		}
	}
}

// Stream keeps the batch full: a finished student leaves and the next one
// takes its row, and no more than MaxRows students are held at once.
func TestStepperStreamRefillsTheBatch(t *testing.T) {
	lengths := []int{3, 1, 1, 2, 4, 1}
	var histories [][][2]int32
	for i, n := range lengths {
		var h [][2]int32
		for k := range n {
			h = append(h, [2]int32{int32((i + k) % eventSkills), int32(k % 2)})
		}
		histories = append(histories, h)
	}
	engine := &hashEngine{}
	stepper, err := NewStepper(engine, StepperConfig{MaxRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	handed, held, most := 0, 0, 0
	finals := map[string][]float32{}
	stats, err := stepper.Stream(context.Background(), func() (*Student, error) {
		if handed == len(histories) {
			return nil, nil
		}
		handed++
		held++
		most = max(most, held)
		return studentOf(fmt.Sprint(handed-1), histories[handed-1]), nil
	}, func(st *Student) error {
		held--
		finals[st.ID] = st.State
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Rows: {0,1} {0,2} {0,3} {3,4} {4,5} {4} {4}.
	if got := fmt.Sprint(runSizes(engine)); got != "[2 2 2 2 2 1 1]" || stats != (StepStats{Runs: 7, Rows: 12}) {
		t.Errorf("runs of %s rows, stats %+v; want [2 2 2 2 2 1 1] and 7 runs of 12 rows", got, stats)
	}
	if most != 2 || held != 0 {
		t.Errorf("held at most %d students, %d at the end; want 2 and 0", most, held)
	}
	for i, h := range histories {
		if _, final := replay(h); fmt.Sprint(finals[fmt.Sprint(i)]) != fmt.Sprint(final) {
			t.Errorf("student %d: final state %v, want %v", i, finals[fmt.Sprint(i)], final)
		}
	}
}

func TestStepperStopsAtANonFiniteState(t *testing.T) {
	a, b := studentOf("a", [][2]int32{{1, 1}, {2, 0}}), studentOf("b", [][2]int32{{3, 0}, {1, 1}})
	stepper, err := NewStepper(&nanEngine{}, StepperConfig{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stepper.Apply(context.Background(), []*Student{a, b})
	var nonFinite *NonFiniteError
	if !errors.As(err, &nonFinite) || nonFinite.Student != b || nonFinite.Interaction != 0 || nonFinite.What != "state[1]" || !math.IsNaN(float64(nonFinite.Value)) {
		t.Fatalf("Apply = %v; want a NonFiniteError for b's first interaction, state[1] = NaN", err)
	}
	if fmt.Sprint(a.State) != "[0 0]" || fmt.Sprint(b.State) != "[0 0]" {
		t.Errorf("states %v and %v changed by the failed round", a.State, b.State)
	}
}

func TestNewStepperChecks(t *testing.T) {
	_, err := NewStepper(&noStepEngine{}, StepperConfig{MaxRows: -1, Engines: -2})
	for _, want := range []string{"no step signature", "MaxRows -1", "Engines -2"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NewStepper = %v; want every problem named (%q)", err, want)
		}
	}
}

func runSizes(e *hashEngine) []int {
	var sizes []int
	for _, r := range e.runs {
		sizes = append(sizes, len(r))
	}
	return sizes
}
