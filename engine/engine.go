// Package engine runs the pipeline's batches on the model: it adapts the
// served model versions (package model) to the plain-Go engine interface of
// package worker, for every command that scores sequences.
package engine

import (
	"context"

	"github.com/dktscore/dktscore/batching"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/worker"
)

// Of runs each batch on the version current when it starts; a reload swaps
// versions between batches, never during one.
func Of(versions *model.Versions) worker.Engine { return modelEngine{versions} }

type modelEngine struct{ versions *model.Versions }

func (e modelEngine) NumSkills() int { return e.versions.Current().NumSkills }

func (e modelEngine) Predict(ctx context.Context, b *batching.Batch, out worker.EngineOutputs) (string, error) {
	m, release := e.versions.Acquire()
	defer release()
	in := model.Inputs{Size: len(b.Items), Steps: b.Steps, SkillID: b.SkillID, Correct: b.Correct, TargetID: b.TargetID, SeqLen: b.SeqLen}
	err := m.Predict(ctx, in, model.Outputs{Last: out.Last, Steps: out.Steps, Next: out.Next})
	return m.Name + "/" + m.Version, err
}
