package scoring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/records"
	"github.com/dktscore/dktscore/model"
)

// `score --emit-state PATH` bootstraps event mode: it writes every scored
// student's LSTM state after their whole history, so the students can be
// loaded into the changelog (`dktscore state load`) before going live.

// emitStateRows is the most students stepped in one run. A step run has a
// fixed cost (graph dispatch, reading the weights), so wide runs are cheaper
// per row: BenchmarkStep measured 34 µs/row at 32 rows and 23 µs/row at 256.
const emitStateRows = 256

// checkEmitState fails before scoring starts when --emit-state cannot work.
func checkEmitState(o Options, m *model.Model) error {
	if o.EmitState == "" {
		return nil
	}
	if o.MaxSteps > 0 {
		return fmt.Errorf("--emit-state with --max-steps %d: a state is the student's whole history (event mode has no window); drop --max-steps or score in two runs", o.MaxSteps)
	}
	if !m.HasStep() {
		// Step's error says why and how to re-export.
		return fmt.Errorf("--emit-state: %w", m.Step(context.Background(), model.StepInputs{}, model.StepOutputs{}))
	}
	if filepath.Clean(o.EmitState) == filepath.Clean(o.Output) {
		return fmt.Errorf("--emit-state %s is the --output file; name another file", o.EmitState)
	}
	return nil
}

type emitSummary struct {
	students, events, skipped, runs int
	wall                            time.Duration
}

// emitStates reads o.Input again and steps every valid student's history
// through model.Step, batched across students, then writes each final state
// to o.EmitState. Records the scoring pass rejected are rejected again and
// skipped here (the rejects file already lists them, with the reason).
func emitStates(ctx context.Context, m *model.Model, o Options, stdout io.Writer) error {
	start := time.Now()
	input, err := OpenInput(o.Input, o.InputFormat, m.NumSkills)
	if err != nil {
		return err
	}
	defer input.Close()
	if err := os.MkdirAll(filepath.Dir(o.EmitState), 0o755); err != nil {
		return err
	}
	version := m.Name + "/" + m.Version
	out, err := columnar.CreateStateFile(o.EmitState,
		columnar.Config{NumSkills: m.NumSkills, ModelVersion: version, Format: columnar.FormatParquet}, m.StateSize())
	if err != nil {
		return err
	}
	sum := emitSummary{}
	next := func() (records.Sequence, bool, error) {
		for {
			s, err := input.Next()
			var reject *records.RejectError
			switch {
			case errors.Is(err, io.EOF):
				return s, false, nil
			case errors.As(err, &reject):
				sum.skipped++
				continue
			case err != nil:
				return s, false, err
			}
			return s, true, nil
		}
	}
	done := func(s records.Sequence, state []float32) error {
		sum.students++
		sum.events += s.Len()
		return out.Write(columnar.StateRow{StudentID: s.StudentID, ModelVersion: version, Events: int64(s.Len()), State: state})
	}
	sum.runs, err = StepHistories(ctx, m, emitStateRows, next, done)
	if err == nil {
		err = out.Close()
	}
	if err != nil {
		out.Abort()
		return fmt.Errorf("--emit-state %s: %w", o.EmitState, err)
	}
	sum.wall = time.Since(start)
	fmt.Fprintf(stdout, "states=%d events=%d skipped_rejects=%d step_runs=%d wall=%.2fs state_size=%d model=%s emit_state=%s\n",
		sum.students, sum.events, sum.skipped, sum.runs, sum.wall.Seconds(), m.StateSize(), version, o.EmitState)
	return nil
}

// StepHistories steps whole histories through model.Step, up to maxRows
// students per run: each run applies the next interaction of every student in
// the batch; a student whose history is done leaves with its final state
// (done gets a slice it may keep) and the next student from next takes its
// row. The batch stays full until the input runs dry, and memory holds
// maxRows students, whatever the input's size. It returns the number of runs.
func StepHistories(ctx context.Context, m *model.Model, maxRows int,
	next func() (records.Sequence, bool, error), done func(records.Sequence, []float32) error) (int, error) {
	size, skills := m.StateSize(), m.NumSkills
	students := make([]records.Sequence, 0, maxRows) // row → student
	applied := make([]int, 0, maxRows)               // row → interactions applied so far
	skill, correct := make([]int32, maxRows), make([]int32, maxRows)
	state, mastery := make([]float32, maxRows*size), make([]float32, maxRows*skills)
	more, runs := true, 0
	for {
		for more && len(students) < maxRows {
			s, ok, err := next()
			if err != nil {
				return runs, err
			}
			if more = ok; ok {
				row := len(students)
				students, applied = append(students, s), append(applied, 0)
				clear(state[row*size : (row+1)*size]) // zero state: no history
			}
		}
		rows := len(students)
		if rows == 0 {
			return runs, nil
		}
		for row, s := range students {
			skill[row], correct[row] = s.Skills[applied[row]], int32(s.Correct[applied[row]])
		}
		if err := m.Step(ctx, model.StepInputs{SkillID: skill[:rows], Correct: correct[:rows], State: state[:rows*size]},
			model.StepOutputs{State: state[:rows*size], Mastery: mastery[:rows*skills]}); err != nil {
			return runs, err
		}
		runs++
		// Finished students leave; the last row moves into the gap with its
		// state and is counted at the gap's index (it lies beyond row, so it has
		// not been counted yet).
		for row := 0; row < len(students); {
			applied[row]++
			if applied[row] < students[row].Len() {
				row++
				continue
			}
			if err := done(students[row], append([]float32(nil), state[row*size:(row+1)*size]...)); err != nil {
				return runs, err
			}
			last := len(students) - 1
			if row != last {
				students[row], applied[row] = students[last], applied[last]
				copy(state[row*size:(row+1)*size], state[last*size:(last+1)*size])
			}
			students, applied = students[:last], applied[:last]
		}
	}
}
