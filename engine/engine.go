// Package engine runs the pipeline's batches on the model: it adapts the
// served model versions (package model) to the plain-Go engine interface of
// package worker, for every command that scores sequences.
//
// A model with the chunk signature scores each batch in blocks of carried
// state (batching.ScheduleChunks): a long history runs in chunks beside many
// others instead of alone, every session run is bounded by rows × ChunkSteps
// whatever the history length, and only the outputs the job reads are
// computed. A model with only predict or predict_ids (a converted checkpoint)
// runs each batch as one call, padded to its longest sequence.
package engine

import (
	"context"
	"fmt"

	"github.com/dktscore/dktscore/batching"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/worker"
)

// ChunkSteps is C, the longest chunk of a block. Measured with `dktscore
// bench` on the test split and ×10 (BENCHMARKS.md, "Chunks"): per step a
// block's cost barely depends on C, but a longer C means fewer runs for a
// long history and a wider length bucket below it, while a shorter one lets
// more histories share the long bucket's blocks.
const ChunkSteps = 64

// Of runs each batch on the version current when it starts; a reload swaps
// versions between batches, never during one.
func Of(versions *model.Versions) worker.Engine { return modelEngine{versions} }

type modelEngine struct{ versions *model.Versions }

func (e modelEngine) NumSkills() int { return e.versions.Current().NumSkills }

// BatchPolicy turns on the chunk path's batching (batching.Config.ChunkSteps)
// when the model has the chunk signature; worker.Run asks before it starts.
func (e modelEngine) BatchPolicy(cfg batching.Config) batching.Config {
	if e.versions.Current().ScoresInChunks() {
		cfg.ChunkSteps = ChunkSteps
	}
	return cfg
}

// Path says how score, serve and model-server run a model's batches when no
// --signature is given, for `dktscore inspect`.
func Path(info model.Info) string {
	if _, err := info.Signature("serve", model.ChunkSignature); err == nil {
		return fmt.Sprintf("%s (blocks of up to --batch-size rows × %d steps, state carried between a history's chunks; --signature turns it off)",
			model.ChunkSignature, ChunkSteps)
	}
	sig, err := model.ChooseSignature(info, "serve", "")
	if err != nil {
		return "none: " + err.Error()
	}
	return sig.Key + " (length buckets, one call per batch padded to its longest sequence)"
}

func (e modelEngine) Predict(ctx context.Context, b *batching.Batch, out worker.EngineOutputs) (string, error) {
	m, release := e.versions.Acquire()
	defer release()
	version := m.Name + "/" + m.Version
	// A batch formed for chunks by a version with the signature is still
	// scored by one without it (a reload between them), as one padded call.
	if b.ChunkSteps > 0 && m.ScoresInChunks() {
		return version, predictChunks(ctx, m, b, out)
	}
	in := model.Inputs{Size: len(b.Items), Steps: b.Steps, SkillID: b.SkillID, Correct: b.Correct, TargetID: b.TargetID, SeqLen: b.SeqLen}
	return version, m.Predict(ctx, in, model.Outputs{Last: out.Last, Steps: out.Steps, Next: out.Next})
}

// predictChunks scores a batch block by block, carrying each row's state
// between its chunks. The outputs land where Predict would put them: out.Last
// per row, out.Next and out.Steps per real step in row order.
func predictChunks(ctx context.Context, m *model.Model, b *batching.Batch, out worker.EngineOutputs) error {
	s, size, t := m.NumSkills, m.ChunkStateSize(), b.Steps
	blockRows, chunk := b.BlockRows, b.ChunkSteps
	first := make([]int, len(b.SeqLen)) // each row's first step in out.Next and out.Steps
	for row := 1; row < len(first); row++ {
		first[row] = first[row-1] + int(b.SeqLen[row-1])
	}
	state := make([]float32, len(b.SeqLen)*size) // zeros: no history
	// One set of block buffers, sized for the largest block; a block of k
	// rows × c steps uses their first k·c values.
	skill, correct, next := make([]int32, blockRows*chunk), make([]int32, blockRows*chunk), make([]int32, blockRows*chunk)
	seqLen, blockState, mastery := make([]int32, blockRows), make([]float32, blockRows*size), make([]float32, blockRows*s)
	var nextProb, predAll []float32
	if out.Next != nil {
		nextProb = make([]float32, blockRows*chunk)
	}
	if out.Steps != nil {
		predAll = make([]float32, blockRows*chunk*s)
	}
	return batching.ScheduleChunks(b.SeqLen, blockRows, chunk, func(bl batching.Block) error {
		k, c := len(bl.Rows), bl.Steps
		in := model.ChunkInputs{Size: k, Steps: c, SkillID: skill[:k*c], Correct: correct[:k*c], NextSkill: next[:k*c],
			SeqLen: seqLen[:k], State: blockState[:k*size]}
		o := model.ChunkOutputs{State: in.State}
		clear(in.SkillID)
		clear(in.Correct)
		clear(in.NextSkill)
		for i, row := range bl.Rows {
			n, from := bl.Lens[i], row*t+bl.Starts[i]
			copy(in.SkillID[i*c:i*c+n], b.SkillID[from:from+n])
			copy(in.Correct[i*c:i*c+n], b.Correct[from:from+n])
			// target_id is the skill of the following step, across chunk
			// boundaries too: exactly the chunk's next_skill.
			copy(in.NextSkill[i*c:i*c+n], b.TargetID[from:from+n])
			in.SeqLen[i] = int32(n)
			copy(in.State[i*size:(i+1)*size], state[row*size:(row+1)*size])
			if bl.Starts[i]+n == int(b.SeqLen[row]) {
				o.Mastery = mastery[:k*s] // some row ends here: fetch mastery
			}
		}
		if nextProb != nil {
			o.NextProb = nextProb[:k*c]
		}
		if predAll != nil {
			o.PredAll = predAll[:k*c*s]
		}
		if err := m.RunChunk(ctx, in, o); err != nil {
			return err
		}
		for i, row := range bl.Rows {
			n, at := bl.Lens[i], first[row]+bl.Starts[i]
			copy(state[row*size:(row+1)*size], in.State[i*size:(i+1)*size])
			if o.NextProb != nil {
				copy(out.Next[at:at+n], o.NextProb[i*c:i*c+n])
			}
			if o.PredAll != nil {
				copy(out.Steps[at*s:(at+n)*s], o.PredAll[i*c*s:(i*c+n)*s])
			}
			if bl.Starts[i]+n == int(b.SeqLen[row]) {
				copy(out.Last[row*s:(row+1)*s], o.Mastery[i*s:(i+1)*s])
			}
		}
		return nil
	})
}
