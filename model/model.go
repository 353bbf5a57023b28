// Package model runs a Deep Knowledge Tracing SavedModel through the TensorFlow C
// API (graft bindings). It is the only package that imports TensorFlow; callers
// pass and receive plain Go slices.
package model

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	tf "github.com/wamuir/graft/tensorflow"
)

// The signatures the bundled exporter writes (python/dkt/export.py).
const (
	// OriginSignature is the origin document's signature: a one-hot input_x
	// [B, T, 2·S] plus the scalars max_steps, keep_prob and batch_size.
	OriginSignature = "predict"
	// IDsSignature is the compact one: skill_id and correct as int32 [B, T]
	// plus sequence_len, the same pred_all. It spares the host the one-hot
	// (2·S floats per step instead of two int32s) and the graph its matmul.
	IDsSignature = "predict_ids"
)

// Names maps the model contract (README, "The model") to the keys of a signature's inputs
// and outputs. The defaults are the bundled model's names; other exports are
// mapped by overriding names, never by guessing.
type Names struct {
	InputX, TargetID, MaxSteps, SequenceLen, KeepProb, BatchSize, PredAll string
	SkillID, Correct                                                      string // the ids signature's inputs
}

// OriginNames are the keys of the origin's "predict" signature, and of the
// exporter's "predict_ids" (skill_id, correct, sequence_len → pred_all).
var OriginNames = Names{
	InputX: "input_x", TargetID: "target_id", MaxSteps: "max_steps", SequenceLen: "sequence_len",
	KeepProb: "keep_prob", BatchSize: "batch_size", PredAll: "pred_all",
	SkillID: "skill_id", Correct: "correct",
}

// Config says which model to load and how to run it.
type Config struct {
	Path string // version directory, or base directory (highest version wins)
	Tag  string // meta graph tag; "" → "serve"
	// Signature is the signature to run; "" picks IDsSignature when the model
	// has it, else OriginSignature. A signature whose inputs include
	// Names.SkillID is fed ids, any other the one-hot input_x. A requested
	// signature is the one every batch runs: ScoresInChunks is then false.
	Signature string
	Names     Names // zero fields take OriginNames
	// Sessions is how many sessions run batches concurrently (≥ 1).
	Sessions int
	// SessionConfig is a serialized tensorflow.ConfigProto (see package gpu).
	SessionConfig []byte
}

func (c *Config) defaults() {
	if c.Tag == "" {
		c.Tag = "serve"
	}
	n := &c.Names
	for _, f := range []struct {
		field *string
		def   string
	}{
		{&n.InputX, OriginNames.InputX}, {&n.TargetID, OriginNames.TargetID}, {&n.MaxSteps, OriginNames.MaxSteps},
		{&n.SequenceLen, OriginNames.SequenceLen}, {&n.KeepProb, OriginNames.KeepProb},
		{&n.BatchSize, OriginNames.BatchSize}, {&n.PredAll, OriginNames.PredAll},
		{&n.SkillID, OriginNames.SkillID}, {&n.Correct, OriginNames.Correct},
	} {
		if *f.field == "" {
			*f.field = f.def
		}
	}
}

func (c Config) validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("model path is empty; pass --model DIR (a SavedModel, e.g. models/dkt)"))
	}
	if c.Sessions < 1 {
		errs = append(errs, fmt.Errorf("sessions = %d; need at least 1", c.Sessions))
	}
	return errors.Join(errs...)
}

// Model is a loaded SavedModel with a pool of sessions.
type Model struct {
	Name, Version, Dir string
	NumSkills          int
	// Signature is the key of the signature Predict runs (see Config.Signature),
	// and IDs whether it is fed ids (true) or the one-hot input_x (false).
	Signature string
	IDs       bool

	requested bool // Config.Signature was set: batches run it, not chunk
	sessions  chan *session
	all       []*session
}

// session is one loaded SavedModel; TF sessions are safe for concurrent Run, but
// separate sessions let a pool size bound the work in flight per model. A
// session serves one Predict at a time (the pool hands it out), so the scratch
// it keeps for its runs needs no lock.
type session struct {
	saved *tf.SavedModel
	ids   bool // feed skill_id and correct, not input_x and the scalars
	// Signature tensors; those the layout does not feed stay zero.
	inputX, skillID, correct, targetID, maxSteps, seqLen, keepProb, batchSize tf.Output
	predAll                                                                   tf.Output
	step                                                                      *stepTensors  // nil: no step signature (see step.go)
	chunk                                                                     *chunkTensors // nil: no chunk signature (see chunk.go)

	// Reused by every run, so that a batch allocates only its tensors.
	feeds   map[tf.Output]*tf.Tensor
	fetches []tf.Output
	one     *tf.Tensor // keep_prob = 1, the same every run
	slice   sliceReader
	oneHot  oneHotReader
	picker  rowPicker

	// Shapes of the inputs. A tensor keeps the slice it was made with, but
	// only for Shape(), and the inputs are dropped when their run ends.
	shapeB, shapeBT, shapeBTD []int64
}

// ChooseSignature resolves Config.Signature: requested when set, else
// IDsSignature when the meta graph tagged tag has it, else OriginSignature.
func ChooseSignature(info Info, tag, requested string) (SignatureInfo, error) {
	if requested != "" {
		return info.Signature(tag, requested)
	}
	if sig, err := info.Signature(tag, IDsSignature); err == nil {
		return sig, nil
	}
	return info.Signature(tag, OriginSignature)
}

// Load loads the model cfg.Sessions times and checks its signature against the
// model contract.
func Load(cfg Config) (*Model, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	info, err := Inspect(cfg.Path)
	if err != nil {
		return nil, err
	}
	sig, err := ChooseSignature(info, cfg.Tag, cfg.Signature)
	if err != nil {
		return nil, err
	}
	requested := cfg.Signature != ""
	cfg.Signature = sig.Key
	_, ids := inputKey(sig, cfg.Names.SkillID)
	if _, oneHot := inputKey(sig, cfg.Names.InputX); !ids && !oneHot {
		return nil, fmt.Errorf("%s: signature %q takes neither %q (ids) nor %q (one-hot): it is not a DKT predict signature; "+
			"pass another --signature, or map the keys with --tensor-names", info.Dir, sig.Key, cfg.Names.SkillID, cfg.Names.InputX)
	}
	var numSkills int
	if ids {
		numSkills, err = checkIDsContract(info.Dir, sig, cfg.Names)
	} else {
		numSkills, err = checkContract(info.Dir, sig, cfg.Names)
	}
	if err != nil {
		return nil, err
	}
	m := &Model{Name: info.Name, Version: info.Version, Dir: info.Dir, NumSkills: numSkills,
		Signature: sig.Key, IDs: ids, requested: requested, sessions: make(chan *session, cfg.Sessions)}
	for range cfg.Sessions {
		s, err := loadSession(info.Dir, cfg, ids)
		if err != nil {
			m.Close()
			return nil, err
		}
		m.all = append(m.all, s)
		m.sessions <- s
	}
	return m, nil
}

func inputKey(sig SignatureInfo, key string) (TensorInfo, bool) {
	for _, t := range sig.Inputs {
		if t.Key == key {
			return t, true
		}
	}
	return TensorInfo{}, false
}

// tensorRule is what the contract asks of one signature key.
type tensorRule struct {
	key, dtype string
	rank       int
}

// checkTensors reports every key of rules that is missing or has the wrong
// dtype or rank.
func checkTensors(sig SignatureInfo, rules []tensorRule) []error {
	var errs []error
	for _, w := range rules {
		t, ok := sig.Tensor(w.key)
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("signature %q has no tensor %q; map it with the matching name flag", sig.Key, w.key))
		case t.DType != w.dtype:
			errs = append(errs, fmt.Errorf("%q is %s, the DKT contract needs %s", w.key, t.DType, w.dtype))
		case !t.UnknownRank && len(t.Shape) != w.rank:
			errs = append(errs, fmt.Errorf("%q has shape %v, the DKT contract needs rank %d", w.key, t.Shape, w.rank))
		}
	}
	return errs
}

// checkContract verifies dtypes and ranks, and derives num_skills from pred_all
// (or input_x's depth / 2 when pred_all's last dimension is unknown).
func checkContract(dir string, sig SignatureInfo, n Names) (int, error) {
	errs := checkTensors(sig, []tensorRule{
		{n.InputX, "float32", 3}, {n.TargetID, "int32", 2}, {n.MaxSteps, "int32", 0},
		{n.SequenceLen, "int32", 1}, {n.KeepProb, "float32", 0}, {n.BatchSize, "int32", 0},
		{n.PredAll, "float32", 3},
	})
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("%s: signature does not match the DKT model contract:\n%w", dir, err)
	}
	pred, _ := sig.Tensor(n.PredAll)
	if len(pred.Shape) == 3 && pred.Shape[2] > 0 {
		return int(pred.Shape[2]), nil
	}
	in, _ := sig.Tensor(n.InputX)
	if len(in.Shape) == 3 && in.Shape[2] > 0 && in.Shape[2]%2 == 0 {
		return int(in.Shape[2] / 2), nil
	}
	return 0, fmt.Errorf("%s: cannot derive num_skills: neither %q nor %q has a known last dimension", dir, n.PredAll, n.InputX)
}

// checkIDsContract is checkContract for a signature fed ids. Every input must
// be one that layout feeds: an input left unfed would fail every run, and one
// such as input_x beside skill_id would make the layout a guess. num_skills
// comes from pred_all, the only tensor that carries it.
func checkIDsContract(dir string, sig SignatureInfo, n Names) (int, error) {
	errs := checkTensors(sig, []tensorRule{
		{n.SkillID, "int32", 2}, {n.Correct, "int32", 2}, {n.SequenceLen, "int32", 1}, {n.PredAll, "float32", 3},
	})
	for _, t := range sig.Inputs {
		if t.Key != n.SkillID && t.Key != n.Correct && t.Key != n.SequenceLen {
			errs = append(errs, fmt.Errorf("signature %q takes %q, but an ids signature is fed only %q, %q and %q; "+
				"pick another --signature or map the names", sig.Key, t.Key, n.SkillID, n.Correct, n.SequenceLen))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("%s: signature does not match the DKT ids contract:\n%w", dir, err)
	}
	if pred, _ := sig.Tensor(n.PredAll); len(pred.Shape) == 3 && pred.Shape[2] > 0 {
		return int(pred.Shape[2]), nil
	}
	return 0, fmt.Errorf("%s: cannot derive num_skills: %q of signature %q has no known last dimension", dir, n.PredAll, sig.Key)
}

// graphOutput resolves a signature's tensor name ("op:index", or "op" for
// index 0) to the graph's output.
func graphOutput(g *tf.Graph, name string) (tf.Output, error) {
	opName, index, _ := strings.Cut(name, ":")
	op := g.Operation(opName)
	if op == nil {
		return tf.Output{}, fmt.Errorf("tensor %q names op %q, which the graph does not have", name, opName)
	}
	i := 0
	if index != "" {
		var err error
		if i, err = strconv.Atoi(index); err != nil {
			return tf.Output{}, fmt.Errorf("tensor %q: output index %q is not a number", name, index)
		}
	}
	return op.Output(i), nil
}

func loadSession(dir string, cfg Config, ids bool) (*session, error) {
	saved, err := tf.LoadSavedModel(dir, []string{cfg.Tag}, &tf.SessionOptions{Config: cfg.SessionConfig})
	if err != nil {
		return nil, fmt.Errorf("%s: loading SavedModel: %w", dir, err)
	}
	sig := saved.Signatures[cfg.Signature]
	s := &session{saved: saved, step: lookupStep(dir, saved), chunk: lookupChunk(dir, saved)}
	s.ids = ids
	var errs []error
	lookup := func(infos map[string]tf.TensorInfo, key string) tf.Output {
		out, err := graphOutput(saved.Graph, infos[key].Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: signature %q: %w", dir, cfg.Signature, err))
		}
		return out
	}
	n := cfg.Names
	s.seqLen = lookup(sig.Inputs, n.SequenceLen)
	s.predAll = lookup(sig.Outputs, n.PredAll)
	if ids {
		s.skillID = lookup(sig.Inputs, n.SkillID)
		s.correct = lookup(sig.Inputs, n.Correct)
	} else {
		s.inputX = lookup(sig.Inputs, n.InputX)
		s.targetID = lookup(sig.Inputs, n.TargetID)
		s.maxSteps = lookup(sig.Inputs, n.MaxSteps)
		s.keepProb = lookup(sig.Inputs, n.KeepProb)
		s.batchSize = lookup(sig.Inputs, n.BatchSize)
		if s.one, err = tf.NewTensor(float32(1)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		saved.Session.Close()
		return nil, err
	}
	s.feeds = make(map[tf.Output]*tf.Tensor, 6)
	s.fetches = []tf.Output{s.predAll}
	s.shapeB, s.shapeBT, s.shapeBTD = make([]int64, 1), make([]int64, 2), make([]int64, 3)
	return s, nil
}

// Close releases every session. Callers stop calling Predict first.
func (m *Model) Close() error {
	var errs []error
	for _, s := range m.all {
		errs = append(errs, s.saved.Session.Close())
	}
	m.all = nil
	return errors.Join(errs...)
}

// Inputs is one padded batch of ids. The model feeds them as they are to an
// ids signature, and turns them into the one-hot input_x for the origin's.
type Inputs struct {
	Size, Steps int     // B and T
	SkillID     []int32 // [B, T]: skill of step t, in [0, S); zero at padding
	Correct     []int32 // [B, T]: 1 when step t was answered correctly, else 0; zero at padding
	TargetID    []int32 // [B, T]: skill of step t+1, in [0, S); zero where there is none
	SeqLen      []int32 // [B]
}

func (in Inputs) check(numSkills int) error {
	var errs []error
	if in.Size < 1 || in.Steps < 1 {
		errs = append(errs, fmt.Errorf("batch %d×%d is empty", in.Size, in.Steps))
	}
	for _, ids := range []struct {
		name   string
		values []int32
		limit  int32
	}{
		{"skill_id", in.SkillID, int32(numSkills)}, {"correct", in.Correct, 2}, {"target_id", in.TargetID, int32(numSkills)},
	} {
		if len(ids.values) != in.Size*in.Steps {
			errs = append(errs, fmt.Errorf("%s has %d values, want %d×%d", ids.name, len(ids.values), in.Size, in.Steps))
			continue
		}
		// An id out of range would fail the whole run inside TensorFlow (or
		// set a bit of another step's one-hot); name the first one instead.
		for i, v := range ids.values {
			if v < 0 || v >= ids.limit {
				errs = append(errs, fmt.Errorf("%s[%d, %d] = %d is outside [0, %d)", ids.name, i/in.Steps, i%in.Steps, v, ids.limit))
				break
			}
		}
	}
	if len(in.SeqLen) != in.Size {
		errs = append(errs, fmt.Errorf("sequence_len has %d values, want %d", len(in.SeqLen), in.Size))
	}
	for b, n := range in.SeqLen {
		if n < 1 || int(n) > in.Steps {
			errs = append(errs, fmt.Errorf("sequence_len[%d] = %d is outside [1, %d]", b, n, in.Steps))
			break
		}
	}
	return errors.Join(errs...)
}

// Outputs receives the parts of pred_all [B, T, S] a caller asks for; only those
// are copied out of TensorFlow's buffer.
type Outputs struct {
	// Last gets pred_all[b, seq_len[b]-1, :] for every row: mastery after the
	// latest interaction (len B·S). Required.
	Last []float32
	// Steps, when not nil, gets pred_all[b, 0:seq_len[b], :] for every row in row
	// order (len Σseq_len·S): the per-step trajectory.
	Steps []float32
	// Next, when not nil, gets pred_all[b, t, target_id[b, t]] for every real step
	// in row order (len Σseq_len): the next-step prediction behind the AUC. The
	// last step of a row has no next answer; its value is unspecified.
	Next []float32
}

func (o Outputs) check(in Inputs, numSkills int) error {
	real := 0
	for _, n := range in.SeqLen {
		real += int(n)
	}
	var errs []error
	if len(o.Last) != in.Size*numSkills {
		errs = append(errs, fmt.Errorf("Outputs.Last has room for %d values, want %d", len(o.Last), in.Size*numSkills))
	}
	if o.Steps != nil && len(o.Steps) != real*numSkills {
		errs = append(errs, fmt.Errorf("Outputs.Steps has room for %d values, want %d", len(o.Steps), real*numSkills))
	}
	if o.Next != nil && len(o.Next) != real {
		errs = append(errs, fmt.Errorf("Outputs.Next has room for %d values, want %d", len(o.Next), real))
	}
	return errors.Join(errs...)
}

// takeSession waits, bounded by ctx, for a session of the pool; every run
// holds one, which bounds the work in flight per model. returnSession gives
// it back.
func (m *Model) takeSession(ctx context.Context) (*session, error) {
	select {
	case s := <-m.sessions:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (m *Model) returnSession(s *session) { m.sessions <- s }

// Predict runs one batch and fills out. ctx bounds the wait for a free session;
// a run that has started finishes.
func (m *Model) Predict(ctx context.Context, in Inputs, out Outputs) error {
	s := m.NumSkills
	if err := errors.Join(in.check(s), out.check(in, s)); err != nil {
		return fmt.Errorf("model %s/%s: %w", m.Name, m.Version, err)
	}
	sess, err := m.takeSession(ctx)
	if err != nil {
		return err
	}
	defer m.returnSession(sess)

	defer sess.forget()
	if err := sess.fill(in, s); err != nil {
		return fmt.Errorf("model %s/%s: %w", m.Name, m.Version, err)
	}
	fetched, err := sess.saved.Session.Run(sess.feeds, sess.fetches, nil)
	if err != nil {
		return fmt.Errorf("model %s/%s: run %s: %w", m.Name, m.Version, m.Signature, err)
	}
	if shape := fetched[0].Shape(); len(shape) != 3 || shape[0] != int64(in.Size) || shape[1] != int64(in.Steps) || shape[2] != int64(s) {
		return fmt.Errorf("model %s/%s: pred_all has shape %v, want [%d %d %d]", m.Name, m.Version, shape, in.Size, in.Steps, s)
	}
	err = copyRows(fetched[0], &sess.picker, in, s, out)
	// copyRows reads pred_all's C buffer in place; a collection before it
	// is done would run the tensor's finalizer and free that buffer.
	runtime.KeepAlive(fetched)
	if err != nil {
		return err
	}
	// The run's tensors are garbage once the feeds let go of the inputs, but
	// C memory the collector cannot see (see droppedTensors in step.go):
	// without this, a pass of big batches held gigabytes of dead pred_all
	// tensors (row f: 9 GiB VmHWM).
	sess.forget()
	droppedTensors(sess.tensorBytes(in, s))
	return nil
}

// tensorBytes is the size of one run's input and output tensors.
func (s *session) tensorBytes(in Inputs, numSkills int) int64 {
	cells := int64(in.Size) * int64(in.Steps)
	n := cells*int64(numSkills) + int64(in.Size) // pred_all and sequence_len
	if s.ids {
		n += 2 * cells // skill_id, correct
	} else {
		n += cells*int64(2*numSkills) + cells + 3 // input_x, target_id, the scalars
	}
	return 4 * n
}

// forget drops what the last run left in the session's scratch: its tensors
// (which TensorFlow frees only once they are unreachable) and the caller's
// slices, which the session must not keep alive until its next run.
func (s *session) forget() {
	clear(s.feeds)
	s.slice.reset(nil)
	s.oneHot = oneHotReader{}
	s.picker = rowPicker{pending: s.picker.pending[:0]}
}

// fill puts the batch's tensors in s.feeds, for the signature's layout.
func (s *session) fill(in Inputs, numSkills int) error {
	b, t := int64(in.Size), int64(in.Steps)
	s.shapeB[0] = b
	s.shapeBT[0], s.shapeBT[1] = b, t
	var errs []error
	feed := func(o tf.Output, dtype tf.DataType, shape []int64, r io.Reader) {
		tensor, err := tf.ReadTensor(dtype, shape, r)
		if err != nil {
			errs = append(errs, err)
			return
		}
		s.feeds[o] = tensor
	}
	s.slice.reset(asBytes(in.SeqLen))
	feed(s.seqLen, tf.Int32, s.shapeB, &s.slice)
	if s.ids {
		s.slice.reset(asBytes(in.SkillID))
		feed(s.skillID, tf.Int32, s.shapeBT, &s.slice)
		s.slice.reset(asBytes(in.Correct))
		feed(s.correct, tf.Int32, s.shapeBT, &s.slice)
		return errors.Join(errs...)
	}
	s.shapeBTD[0], s.shapeBTD[1], s.shapeBTD[2] = b, t, int64(2*numSkills)
	s.oneHot.reset(in, numSkills)
	feed(s.inputX, tf.Float, s.shapeBTD, &s.oneHot)
	s.slice.reset(asBytes(in.TargetID))
	feed(s.targetID, tf.Int32, s.shapeBT, &s.slice)
	for _, scalar := range []struct {
		o tf.Output
		v int32
	}{{s.maxSteps, int32(in.Steps)}, {s.batchSize, int32(in.Size)}} {
		tensor, err := tf.NewTensor(scalar.v)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.feeds[scalar.o] = tensor
	}
	s.feeds[s.keepProb] = s.one
	return errors.Join(errs...)
}

// asBytes views a numeric slice as its little-endian bytes without copying;
// ReadTensor then makes the single copy into TensorFlow's buffer.
func asBytes[T float32 | int32](v []T) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*4)
}

// sliceReader is bytes.Reader without the allocation per tensor: a session
// keeps one and points it at each input in turn.
type sliceReader struct{ rest []byte }

func (r *sliceReader) reset(b []byte) { r.rest = b }

func (r *sliceReader) Read(p []byte) (int, error) {
	if len(r.rest) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}

// oneHotReader yields the origin's input_x [B, T, 2·S] (float32: 1 at
// skill + S·correct of every real step, 0 elsewhere, padded steps all zero)
// from the ids. ReadTensor asks for TensorFlow's whole, aligned buffer in one
// Read (io.ReadFull), so the one-hot is written once, straight into the
// tensor, with no host-side copy of its own; smaller or unaligned reads are
// answered byte by byte, only so that the reader is right for any caller.
type oneHotReader struct {
	in        Inputs
	numSkills int
	pos, size int // bytes handed out so far, of size
}

func (r *oneHotReader) reset(in Inputs, numSkills int) {
	*r = oneHotReader{in: in, numSkills: numSkills, size: in.Size * in.Steps * 2 * numSkills * 4}
}

// hot is the index within step row (b·T + t) of its 1, or -1 at padding.
func (r *oneHotReader) hot(row int) int {
	if row%r.in.Steps >= int(r.in.SeqLen[row/r.in.Steps]) {
		return -1
	}
	return int(r.in.SkillID[row]) + r.numSkills*int(r.in.Correct[row])
}

func (r *oneHotReader) Read(p []byte) (int, error) {
	if r.pos == r.size {
		return 0, io.EOF
	}
	p = p[:min(len(p), r.size-r.pos)]
	depth := 2 * r.numSkills
	if r.pos%4 != 0 || len(p) < 4 || uintptr(unsafe.Pointer(&p[0]))%4 != 0 {
		elem := r.pos / 4
		var v [4]byte
		if r.hot(elem/depth) == elem%depth {
			binary.LittleEndian.PutUint32(v[:], math.Float32bits(1))
		}
		n := copy(p, v[r.pos%4:])
		r.pos += n
		return n, nil
	}
	first := r.pos / 4
	x := unsafe.Slice((*float32)(unsafe.Pointer(&p[0])), len(p)/4)
	clear(x) // TensorFlow's buffer comes uninitialised
	for row := first / depth; row*depth < first+len(x); row++ {
		if k := r.hot(row); k >= 0 {
			if i := row*depth + k - first; i >= 0 && i < len(x) {
				x[i] = 1
			}
		}
	}
	r.pos += len(x) * 4
	return len(x) * 4, nil
}

// copyRows copies the selected rows of pred_all [B, T, S]. WriteContentsTo hands
// TensorFlow's buffer to the writer (bytes.Reader.WriteTo writes it in one call),
// so only the selected rows are copied, never the whole tensor.
func copyRows(predAll *tf.Tensor, w *rowPicker, in Inputs, numSkills int, out Outputs) error {
	*w = rowPicker{in: in, numSkills: numSkills, out: out, pending: w.pending[:0]}
	if _, err := predAll.WriteContentsTo(w); err != nil {
		return fmt.Errorf("reading pred_all: %w", err)
	}
	if w.seen != in.Size*in.Steps*numSkills*4 {
		return fmt.Errorf("pred_all delivered %d bytes, want %d", w.seen, in.Size*in.Steps*numSkills*4)
	}
	return nil
}

// rowPicker is an io.Writer over pred_all's raw bytes. TensorFlow's buffer
// arrives in one write and is read in place; should it ever arrive in pieces,
// the pieces are gathered first.
type rowPicker struct {
	in        Inputs
	numSkills int
	out       Outputs
	seen      int
	pending   []byte
}

func (p *rowPicker) Write(chunk []byte) (int, error) {
	total := p.in.Size * p.in.Steps * p.numSkills * 4
	p.seen += len(chunk)
	if p.seen > total {
		return 0, fmt.Errorf("pred_all has more than the %d bytes its shape allows", total)
	}
	if len(chunk) == total {
		p.pick(chunk)
		return len(chunk), nil
	}
	p.pending = append(p.pending, chunk...)
	if len(p.pending) == total {
		p.pick(p.pending)
	}
	return len(chunk), nil
}

func (p *rowPicker) pick(raw []byte) {
	all := unsafe.Slice((*float32)(unsafe.Pointer(&raw[0])), len(raw)/4)
	s, t := p.numSkills, p.in.Steps
	row := 0 // index of the next real step across the batch
	for b, n := range p.in.SeqLen {
		base := b * t * s
		copy(p.out.Last[b*s:(b+1)*s], all[base+(int(n)-1)*s:base+int(n)*s])
		if p.out.Steps != nil {
			copy(p.out.Steps[row*s:], all[base:base+int(n)*s])
		}
		if p.out.Next != nil {
			for step := range int(n) {
				p.out.Next[row+step] = all[base+step*s+int(p.in.TargetID[b*t+step])]
			}
		}
		row += int(n)
	}
}
