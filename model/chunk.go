package model

import (
	"context"
	"errors"
	"fmt"
	"runtime"

	tf "github.com/wamuir/graft/tensorflow"
)

// ChunkSignature is the signature that advances carried LSTM state by up to C
// interactions per row: long histories run in pieces with their state carried
// between runs, and many students share a block. Its keys: inputs skill_id,
// correct and next_skill (int32 [B, C]), sequence_len (int32 [B]) and the
// state keys of StepSignature; outputs those state keys (the state after each
// row's last real step), mastery (float32 [B, S]) at each row's last real
// step, next_prob (float32 [B, C]) and pred_all (float32 [B, C, S]).
const ChunkSignature = "chunk"

// ChunkInputs is one block: up to Steps interactions for each of Size rows,
// and the state each row carries into them.
type ChunkInputs struct {
	Size, Steps int     // B and C
	SkillID     []int32 // [B, C]: skill of step t; zero at padding
	Correct     []int32 // [B, C]: 1 when step t was answered correctly, else 0; zero at padding
	// NextSkill is [B, C]: the skill answered right after step t (at a row's
	// last real step of this chunk, the first of its next chunk), zero where
	// there is none. NextProb is the probability of a correct answer on it.
	NextSkill []int32
	SeqLen    []int32 // [B]: real steps of this chunk per row, in [1, C]
	// State is [B, StateSize]: per row, every layer's c then h, in layer
	// order. All zeros is a student with no history.
	State []float32
}

// ChunkOutputs receives what a caller asks for; a nil field is not fetched,
// and TensorFlow then does not compute it. State is required and may be the
// same slice as ChunkInputs.State (updated in place): the inputs are copied
// into TensorFlow before the run.
type ChunkOutputs struct {
	State    []float32 // [B, StateSize]: the state after each row's last real step
	Mastery  []float32 // [B, S]: P(correct on skill k next) after each row's last real step
	NextProb []float32 // [B, C]: P(correct on NextSkill[b, t]) after step t
	PredAll  []float32 // [B, C, S]: P(correct on skill k next) after step t (rows past SeqLen hold padding's answer)
}

// chunkTensors is the chunk signature resolved in one session, with the
// scratch every run reuses (a session runs one caller at a time).
type chunkTensors struct {
	err                                 error // set when the signature exists but breaks the contract
	skillID, correct, nextSkill, seqLen tf.Output
	state                               carriedState
	mastery, nextProb, predAll          tf.Output
	masteryWidth, predAllWidth          int // S as the signature declares it
	feeds                               map[tf.Output]*tf.Tensor
	fetches                             []tf.Output
	shapeB, shapeBC                     []int64
	readers, writers                    []rowColumns
	shapes                              [][]int64 // [B, H] per state input
	slice                               sliceReader
	contents                            bytesWriter
}

// lookupChunk resolves the chunk signature like lookupStep: nil when the
// model has none, a non-nil err field when it breaks the contract.
func lookupChunk(dir string, saved *tf.SavedModel) *chunkTensors {
	sig, ok := saved.Signatures[ChunkSignature]
	if !ok {
		return nil
	}
	ct := &chunkTensors{}
	l := &signatureLookup{name: ChunkSignature, saved: saved, sig: sig}
	ct.skillID, _, _ = l.tensor(sig.Inputs, "input", "skill_id", tf.Int32, 2)
	ct.correct, _, _ = l.tensor(sig.Inputs, "input", "correct", tf.Int32, 2)
	ct.nextSkill, _, _ = l.tensor(sig.Inputs, "input", "next_skill", tf.Int32, 2)
	ct.seqLen, _, _ = l.tensor(sig.Inputs, "input", "sequence_len", tf.Int32, 1)
	if out, shape, ok := l.tensor(sig.Outputs, "output", "mastery", tf.Float, 2); ok {
		ct.mastery, ct.masteryWidth = out, int(shape.Size(1))
	}
	ct.nextProb, _, _ = l.tensor(sig.Outputs, "output", "next_prob", tf.Float, 2)
	if out, shape, ok := l.tensor(sig.Outputs, "output", "pred_all", tf.Float, 3); ok {
		ct.predAll, ct.predAllWidth = out, int(shape.Size(2))
	}
	ct.state = l.state()
	if err := errors.Join(l.errs...); err != nil {
		ct.err = fmt.Errorf("%s: %w", dir, err)
		return ct
	}
	ct.feeds = make(map[tf.Output]*tf.Tensor, 4+len(ct.state.in))
	ct.fetches = make([]tf.Output, 0, len(ct.state.out)+3)
	ct.shapeB, ct.shapeBC = make([]int64, 1), make([]int64, 2)
	ct.readers, ct.writers, ct.shapes = ct.state.columns()
	return ct
}

// chunkInfo is the chunk signature of the first session: every session loaded
// the same SavedModel, so they agree.
func (m *Model) chunkInfo() *chunkTensors {
	if len(m.all) == 0 {
		return nil
	}
	return m.all[0].chunk
}

// HasChunk says whether the model can run RunChunk.
func (m *Model) HasChunk() bool { return m.chunkError() == nil }

// ScoresInChunks says whether batches should run through RunChunk: the model
// has the chunk signature and no other was requested (Config.Signature).
func (m *Model) ScoresInChunks() bool { return !m.requested && m.HasChunk() }

// ChunkStateSize is the length of one row's carried state in RunChunk (as
// StateSize for Step); 0 when the model has no chunk signature.
func (m *Model) ChunkStateSize() int {
	if !m.HasChunk() {
		return 0
	}
	return m.chunkInfo().state.stateSize
}

// chunkError says why RunChunk cannot run on this model, or nil.
func (m *Model) chunkError() error {
	ct := m.chunkInfo()
	switch {
	case ct == nil:
		return fmt.Errorf("model %s/%s (%s) has no %q signature; re-export it with `python -m dkt.upgrade --model DIR` "+
			"(models trained by dkt.train; a checkpoint converted from the origin has only predict)", m.Name, m.Version, m.Dir, ChunkSignature)
	case ct.err != nil:
		return fmt.Errorf("model %s/%s: %w; re-export it with `python -m dkt.upgrade --model DIR`", m.Name, m.Version, ct.err)
	case ct.masteryWidth != m.NumSkills || ct.predAllWidth != m.NumSkills:
		return fmt.Errorf("model %s/%s: chunk's outputs have %d and %d skills but %s's pred_all has %d; re-export it with `python -m dkt.upgrade --model DIR`",
			m.Name, m.Version, ct.masteryWidth, ct.predAllWidth, m.Signature, m.NumSkills)
	}
	return nil
}

func (in ChunkInputs) check(out ChunkOutputs, numSkills, stateSize int) error {
	var errs []error
	b, c := in.Size, in.Steps
	if b < 1 || c < 1 {
		errs = append(errs, fmt.Errorf("chunk block %d×%d is empty", b, c))
	}
	for _, ids := range []struct {
		name   string
		values []int32
		limit  int32
	}{
		{"skill_id", in.SkillID, int32(numSkills)}, {"correct", in.Correct, 2}, {"next_skill", in.NextSkill, int32(numSkills)},
	} {
		if len(ids.values) != b*c {
			errs = append(errs, fmt.Errorf("%s has %d values, want %d×%d", ids.name, len(ids.values), b, c))
			continue
		}
		// TensorFlow's CPU gather fails on an out-of-range id but a GPU
		// gather returns zeros, so ids are checked here, where the row can
		// be named.
		for i, v := range ids.values {
			if v < 0 || v >= ids.limit {
				errs = append(errs, fmt.Errorf("%s[%d, %d] = %d is outside [0, %d)", ids.name, i/c, i%c, v, ids.limit))
				break
			}
		}
	}
	if len(in.SeqLen) != b {
		errs = append(errs, fmt.Errorf("sequence_len has %d values, want %d", len(in.SeqLen), b))
	}
	for row, n := range in.SeqLen {
		if n < 1 || int(n) > c {
			errs = append(errs, fmt.Errorf("sequence_len[%d] = %d is outside [1, %d]", row, n, c))
			break
		}
	}
	for _, o := range []struct {
		name      string
		got, want int
		optional  bool
	}{
		{"ChunkInputs.State", len(in.State), b * stateSize, false},
		{"ChunkOutputs.State", len(out.State), b * stateSize, false},
		{"ChunkOutputs.Mastery", len(out.Mastery), b * numSkills, true},
		{"ChunkOutputs.NextProb", len(out.NextProb), b * c, true},
		{"ChunkOutputs.PredAll", len(out.PredAll), b * c * numSkills, true},
	} {
		if o.got != o.want && !(o.optional && o.got == 0) {
			errs = append(errs, fmt.Errorf("%s has room for %d values, want %d", o.name, o.got, o.want))
		}
	}
	return errors.Join(errs...)
}

// RunChunk runs one block of the chunk signature and fills out; only the
// outputs out asks for are computed. ctx bounds the wait for a free session;
// a run that has started finishes. After an error out.State is undefined (and
// so is in.State when they share memory).
func (m *Model) RunChunk(ctx context.Context, in ChunkInputs, out ChunkOutputs) error {
	if err := m.chunkError(); err != nil {
		return err
	}
	stateSize := m.chunkInfo().state.stateSize
	if err := in.check(out, m.NumSkills, stateSize); err != nil {
		return fmt.Errorf("model %s/%s: chunk: %w", m.Name, m.Version, err)
	}
	sess, err := m.takeSession(ctx)
	if err != nil {
		return err
	}
	defer m.returnSession(sess)
	ct := sess.chunk
	// The run's tensors must become unreachable once it ends (see forget in
	// model.go), and the caller's slices must not stay referenced.
	defer func() {
		clear(ct.feeds)
		ct.slice.reset(nil)
		for i := range ct.readers {
			ct.readers[i].reset(nil)
			ct.writers[i].reset(nil)
		}
		ct.contents.reset(nil)
	}()
	if err := ct.fill(in); err != nil {
		return fmt.Errorf("model %s/%s: chunk: %w", m.Name, m.Version, err)
	}
	ct.fetches = append(ct.fetches[:0], ct.state.out...)
	optional := []struct {
		name string
		o    tf.Output
		dst  []float32
	}{{"mastery", ct.mastery, out.Mastery}, {"next_prob", ct.nextProb, out.NextProb}, {"pred_all", ct.predAll, out.PredAll}}
	for _, f := range optional {
		if f.dst != nil {
			ct.fetches = append(ct.fetches, f.o)
		}
	}
	fetched, err := sess.saved.Session.Run(ct.feeds, ct.fetches, nil)
	if err != nil {
		return fmt.Errorf("model %s/%s: run %s: %w", m.Name, m.Version, ChunkSignature, err)
	}
	rows := in.Size
	for i, t := range fetched[:len(ct.state.out)] {
		w := &ct.writers[i]
		if shape := t.Shape(); len(shape) != 2 || shape[0] != int64(rows) || shape[1] != int64(w.width) {
			return fmt.Errorf("model %s/%s: chunk: state output %d has shape %v, want [%d %d]", m.Name, m.Version, i, shape, rows, w.width)
		}
		w.reset(out.State)
		if _, err := t.WriteContentsTo(w); err != nil {
			return fmt.Errorf("model %s/%s: chunk: reading state output %d: %w", m.Name, m.Version, i, err)
		}
	}
	next := len(ct.state.out)
	for _, f := range optional {
		if f.dst == nil {
			continue
		}
		ct.contents.reset(asBytes(f.dst))
		if _, err := fetched[next].WriteContentsTo(&ct.contents); err != nil || ct.contents.n != len(f.dst)*4 {
			return fmt.Errorf("model %s/%s: chunk: reading %s (%d of %d bytes, shape %v): %v",
				m.Name, m.Version, f.name, ct.contents.n, len(f.dst)*4, fetched[next].Shape(), err)
		}
		next++
	}
	// The outputs were read in place from their C buffers: keep them alive
	// until here; the deferred clear then lets the inputs go too.
	runtime.KeepAlive(fetched)
	droppedTensors(ct.tensorBytes(in, out, stateSize))
	return nil
}

// fill puts the block's tensors in ct.feeds.
func (ct *chunkTensors) fill(in ChunkInputs) error {
	ct.shapeB[0] = int64(in.Size)
	ct.shapeBC[0], ct.shapeBC[1] = int64(in.Size), int64(in.Steps)
	var errs []error
	feed := func(o tf.Output, dtype tf.DataType, shape []int64, values []byte) {
		ct.slice.reset(values)
		tensor, err := tf.ReadTensor(dtype, shape, &ct.slice)
		if err != nil {
			errs = append(errs, err)
			return
		}
		ct.feeds[o] = tensor
	}
	feed(ct.skillID, tf.Int32, ct.shapeBC, asBytes(in.SkillID))
	feed(ct.correct, tf.Int32, ct.shapeBC, asBytes(in.Correct))
	feed(ct.nextSkill, tf.Int32, ct.shapeBC, asBytes(in.NextSkill))
	feed(ct.seqLen, tf.Int32, ct.shapeB, asBytes(in.SeqLen))
	for i, o := range ct.state.in {
		r := &ct.readers[i]
		r.reset(in.State)
		ct.shapes[i][0] = int64(in.Size)
		tensor, err := tf.ReadTensor(tf.Float, ct.shapes[i], r)
		if err != nil {
			errs = append(errs, fmt.Errorf("state input %d: %w", i, err))
			continue
		}
		ct.feeds[o] = tensor
	}
	return errors.Join(errs...)
}

// tensorBytes is the size of one run's input and output tensors.
func (ct *chunkTensors) tensorBytes(in ChunkInputs, out ChunkOutputs, stateSize int) int64 {
	cells := int64(in.Size) * int64(in.Steps)
	n := 3*cells + int64(in.Size) + 2*int64(in.Size)*int64(stateSize)
	n += int64(len(out.Mastery) + len(out.NextProb) + len(out.PredAll))
	return 4 * n
}
