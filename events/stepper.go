package events

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
)

// Student is one student's carried state and the interactions to apply to
// it, oldest first.
type Student struct {
	// ID is the caller's name for the student; the Stepper does not read it.
	ID string
	// State is the carried state, StateSize floats (zeros: no history). The
	// Stepper updates it in place after each applied interaction.
	State   []float32
	Skills  []int32
	Correct []int8
	// Mastery, when set, receives the mastery after each interaction:
	// Mastery[k·NumSkills:(k+1)·NumSkills] after Skills[k].
	Mastery []float32

	applied int // interactions applied so far
}

// StepperConfig sizes a Stepper's Step runs.
type StepperConfig struct {
	// MaxRows bounds the batch: the most students stepped in one round, and
	// so held at once by Stream (0: no bound).
	MaxRows int
	// Engines is how many Step runs one round may be split into, run
	// concurrently; match it to the model's session pool. 0 or 1: one run.
	Engines int
}

// StepStats counts the Step runs of a call and the rows over them.
type StepStats struct{ Runs, Rows int }

// Stepper applies interactions to carried states, in rounds. A round steps
// the next interaction of every student in the batch, one row per student,
// so each student's interactions are applied in order, each one LSTM step
// from the state the previous one left. A large round is split over up to
// Engines concurrent Step runs; rounds follow one another, as each needs
// the states the last one left. After a round, a student with nothing left
// to apply leaves the batch and the next waiting student takes its row, so
// the batch stays full while students remain.
//
// Event mode steps each poll's students (Apply), `score --emit-state` steps
// whole histories (Stream), and `bench --rows g` times the same code.
//
// A Stepper keeps its buffers from call to call: use it from one goroutine
// at a time.
type Stepper struct {
	engine Engine
	cfg    StepperConfig

	batch           []*Student
	skills, correct []int32
	states, mastery []float32
}

// NewStepper checks that engine can step and cfg is usable.
func NewStepper(engine Engine, cfg StepperConfig) (*Stepper, error) {
	var errs []error
	if engine.StateSize() < 1 {
		errs = append(errs, errors.New("the model has no step signature, so it cannot carry state; re-export it with `python -m dkt.upgrade --model DIR`"))
	}
	if cfg.MaxRows < 0 {
		errs = append(errs, fmt.Errorf("stepper: MaxRows %d is negative; use 0 for no bound", cfg.MaxRows))
	}
	if cfg.Engines < 0 {
		errs = append(errs, fmt.Errorf("stepper: Engines %d is negative; use the model's session count", cfg.Engines))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Stepper{engine: engine, cfg: cfg}, nil
}

// Apply applies every interaction of students, in the order given.
func (s *Stepper) Apply(ctx context.Context, students []*Student) (StepStats, error) {
	next := 0
	return s.Stream(ctx, func() (*Student, error) {
		if next == len(students) {
			return nil, nil
		}
		next++
		return students[next-1], nil
	}, nil)
}

// Stream applies every interaction of the students next hands out (nil: no
// more), admitting a student whenever the batch has room, and calls done,
// when set, with each student once its last interaction is applied. Held
// students are at most MaxRows however many next has, so memory stays
// bounded on any input when done lets the finished ones go.
//
// On error the students in the batch are left part-applied; a
// NonFiniteError says which interaction of which student failed.
func (s *Stepper) Stream(ctx context.Context, next func() (*Student, error), done func(*Student) error) (StepStats, error) {
	var stats StepStats
	batch, more := s.batch[:0], true
	defer func() {
		clear(batch) // the kept backing array must not hold students (their states) alive
		s.batch = batch[:0]
	}()
	for {
		for more && (s.cfg.MaxRows == 0 || len(batch) < s.cfg.MaxRows) {
			st, err := next()
			if err != nil {
				return stats, err
			}
			if more = st != nil; !more {
				break
			}
			st.applied = 0
			if len(st.Skills) > 0 {
				batch = append(batch, st)
			} else if done != nil {
				if err := done(st); err != nil { // nothing to apply
					return stats, err
				}
			}
		}
		if len(batch) == 0 {
			return stats, nil
		}
		runs, err := s.round(ctx, batch)
		if err != nil {
			return stats, err
		}
		stats.Runs += runs
		stats.Rows += len(batch)
		kept := batch[:0]
		for _, st := range batch {
			if st.applied < len(st.Skills) {
				kept = append(kept, st)
			} else if done != nil {
				if err := done(st); err != nil {
					return stats, err
				}
			}
		}
		clear(batch[len(kept):])
		batch = kept
	}
}

// round steps the next interaction of every student in batch and returns the
// number of Step runs. The students' states and masteries change only once
// every run succeeded and returned finite values.
func (s *Stepper) round(ctx context.Context, batch []*Student) (int, error) {
	size, skills, n := s.engine.StateSize(), s.engine.NumSkills(), len(batch)
	s.grow(n)
	for j, st := range batch {
		s.skills[j], s.correct[j] = st.Skills[st.applied], int32(st.Correct[st.applied])
		copy(s.states[j*size:(j+1)*size], st.State)
	}
	runs := s.split(n)
	errs := make([]error, len(runs))
	var wg sync.WaitGroup
	for k, r := range runs {
		lo, hi := r[0], r[1]
		states := s.states[lo*size : hi*size]
		wg.Go(func() {
			errs[k] = s.engine.Step(ctx, s.skills[lo:hi], s.correct[lo:hi], states, states, s.mastery[lo*skills:hi*skills])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("stepping %d students: %w", n, err)
	}
	for j, st := range batch {
		if err := checkFinite(st, s.states[j*size:(j+1)*size], s.mastery[j*skills:(j+1)*skills]); err != nil {
			return 0, err
		}
	}
	for j, st := range batch {
		copy(st.State, s.states[j*size:(j+1)*size])
		if st.Mastery != nil {
			copy(st.Mastery[st.applied*skills:(st.applied+1)*skills], s.mastery[j*skills:(j+1)*skills])
		}
		st.applied++
	}
	return len(runs), nil
}

// grow sizes the round buffers for n rows.
func (s *Stepper) grow(n int) {
	if len(s.skills) >= n {
		return
	}
	s.skills, s.correct = make([]int32, n), make([]int32, n)
	s.states = make([]float32, n*s.engine.StateSize())
	s.mastery = make([]float32, n*s.engine.NumSkills())
}

// minRowsPerRun keeps small rounds in one run: below it, a second session
// costs more in call overhead than it saves.
const minRowsPerRun = 16

// split divides n rows into up to Engines runs of about equal size, as
// [first, end) row ranges; a small round stays one run.
func (s *Stepper) split(n int) [][2]int {
	parts := max(1, min(s.cfg.Engines, n/minRowsPerRun))
	per := (n + parts - 1) / parts
	runs := make([][2]int, 0, parts)
	for lo := 0; lo < n; lo += per {
		runs = append(runs, [2]int{lo, min(lo+per, n)})
	}
	return runs
}

// NonFiniteError: the model returned a NaN or infinity for a student's new
// state or mastery. Kept, such a state would poison every later step of the
// student (and a changelog, whose reader refuses it), so the round's results
// are not kept.
type NonFiniteError struct {
	Student     *Student
	Interaction int    // index into Student.Skills
	What        string // "state[i]" or "mastery[i]"
	Value       float32
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("the model returned %s = %v", e.What, e.Value)
}

// checkFinite returns a NonFiniteError for st when its new state or mastery
// holds a NaN or an infinity.
func checkFinite(st *Student, state, mastery []float32) error {
	for _, v := range []struct {
		name   string
		values []float32
	}{{"state", state}, {"mastery", mastery}} {
		for i, x := range v.values {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return &NonFiniteError{Student: st, Interaction: st.applied, What: fmt.Sprintf("%s[%d]", v.name, i), Value: x}
			}
		}
	}
	return nil
}
