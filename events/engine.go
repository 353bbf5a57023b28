package events

import (
	"context"

	"github.com/dktscore/dktscore/model"
)

// Engine runs the model's step signature (model.Step) in plain Go types:
// one interaction per row applied to the state each row carries.
type Engine interface {
	NumSkills() int
	// StateSize is the length of one row's state (0: the model cannot step).
	StateSize() int
	// Step reads skills and correct ([B]) and state ([B·StateSize], zeros for
	// no history) and writes newState ([B·StateSize], may be state itself)
	// and mastery ([B·NumSkills]).
	Step(ctx context.Context, skills, correct []int32, state, newState, mastery []float32) error
}

// ModelEngine is m's step signature as an Engine.
func ModelEngine(m *model.Model) Engine { return modelEngine{m} }

type modelEngine struct{ m *model.Model }

func (e modelEngine) NumSkills() int { return e.m.NumSkills }
func (e modelEngine) StateSize() int { return e.m.StateSize() }
func (e modelEngine) Step(ctx context.Context, skills, correct []int32, st, newState, mastery []float32) error {
	return e.m.Step(ctx, model.StepInputs{SkillID: skills, Correct: correct, State: st},
		model.StepOutputs{State: newState, Mastery: mastery})
}
