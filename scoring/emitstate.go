package scoring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dktscore/dktscore/events"
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
	return nil
}

type emitSummary struct {
	students, events, skipped, runs int
	wall                            time.Duration
}

func (sum *emitSummary) print(w io.Writer, m *model.Model, o Options) {
	fmt.Fprintf(w, "states=%d events=%d skipped_rejects=%d step_runs=%d wall=%.2fs state_size=%d model=%s/%s emit_state=%s\n",
		sum.students, sum.events, sum.skipped, sum.runs, sum.wall.Seconds(), m.StateSize(), m.Name, m.Version, o.EmitState)
}

// emitStates reads o.Input again and steps every valid student's history
// through model.Step, batched across students (events.Stepper), then writes
// each final state to path (o.EmitState's temporary name; Run moves it into
// place with the other outputs). Records the scoring pass rejected are
// rejected again and skipped here (the rejects file already lists them, with
// the reason). When the scoring pass stopped at a read error
// (stopAtReadError), this pass stops at the same error, so that the states
// cover the students that were scored.
func emitStates(ctx context.Context, m *model.Model, o Options, path string, stopAtReadError bool) (*emitSummary, error) {
	start := time.Now()
	stepper, err := events.NewStepper(events.ModelEngine(m), events.StepperConfig{MaxRows: emitStateRows, Engines: o.Sessions})
	if err != nil {
		return nil, err
	}
	input, err := openInput(ctx, o.Input, o.InputFormat, m.NumSkills)
	if err != nil {
		return nil, err
	}
	defer input.Close()
	version := m.Name + "/" + m.Version
	out, err := columnar.CreateStateFile(path,
		columnar.Config{NumSkills: m.NumSkills, ModelVersion: version, Format: columnar.FormatParquet}, m.StateSize())
	if err != nil {
		return nil, fmt.Errorf("--emit-state %s: %w", o.EmitState, err)
	}
	sum := &emitSummary{}
	next := func() (*events.Student, error) {
		for {
			s, err := input.Next()
			var reject *records.RejectError
			switch {
			case errors.Is(err, io.EOF):
				return nil, nil
			case errors.As(err, &reject):
				sum.skipped++
				continue
			case err != nil && stopAtReadError:
				return nil, nil
			case err != nil:
				return nil, err
			}
			return &events.Student{ID: s.StudentID, State: make([]float32, m.StateSize()), Skills: s.Skills, Correct: s.Correct}, nil
		}
	}
	done := func(s *events.Student) error {
		sum.students++
		sum.events += len(s.Skills)
		return out.Write(columnar.StateRow{StudentID: s.ID, ModelVersion: version, Events: int64(len(s.Skills)), State: s.State})
	}
	// The stepper holds emitStateRows students at a time, whatever the
	// input's size: memory stays bounded.
	stats, err := stepper.Stream(ctx, next, done)
	sum.runs = stats.Runs
	var nonFinite *events.NonFiniteError
	if errors.As(err, &nonFinite) {
		err = fmt.Errorf("student %q, interaction %d of %d: %w; check the model's weights", nonFinite.Student.ID, nonFinite.Interaction+1, len(nonFinite.Student.Skills), err)
	}
	if err == nil {
		err = out.Close()
	}
	if err != nil {
		out.Abort()
		return nil, fmt.Errorf("--emit-state %s: %w", o.EmitState, err)
	}
	sum.wall = time.Since(start)
	return sum, nil
}
