// Package model runs a Deep Knowledge Tracing SavedModel through the TensorFlow C
// API (graft bindings). It is the only package that imports TensorFlow; callers
// pass and receive plain Go slices.
package model

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"unsafe"

	tf "github.com/wamuir/graft/tensorflow"
)

// Names maps the model contract (GUIDE §1) to the keys of a signature's inputs
// and outputs. The defaults are the origin's names; other exports are mapped by
// overriding names, never by guessing.
type Names struct {
	InputX, TargetID, MaxSteps, SequenceLen, KeepProb, BatchSize, PredAll string
}

// OriginNames are the keys of the origin's "predict" signature.
var OriginNames = Names{
	InputX: "input_x", TargetID: "target_id", MaxSteps: "max_steps", SequenceLen: "sequence_len",
	KeepProb: "keep_prob", BatchSize: "batch_size", PredAll: "pred_all",
}

// Config says which model to load and how to run it.
type Config struct {
	Path      string // version directory, or base directory (highest version wins)
	Tag       string // meta graph tag; "" → "serve"
	Signature string // "" → "predict"
	Names     Names  // zero fields take OriginNames
	// Sessions is how many sessions run batches concurrently (≥ 1).
	Sessions int
	// SessionConfig is a serialized tensorflow.ConfigProto (see package gpu).
	SessionConfig []byte
}

func (c *Config) defaults() {
	if c.Tag == "" {
		c.Tag = "serve"
	}
	if c.Signature == "" {
		c.Signature = "predict"
	}
	n := &c.Names
	for _, f := range []struct {
		field *string
		def   string
	}{
		{&n.InputX, OriginNames.InputX}, {&n.TargetID, OriginNames.TargetID}, {&n.MaxSteps, OriginNames.MaxSteps},
		{&n.SequenceLen, OriginNames.SequenceLen}, {&n.KeepProb, OriginNames.KeepProb},
		{&n.BatchSize, OriginNames.BatchSize}, {&n.PredAll, OriginNames.PredAll},
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

	sessions chan *session
	all      []*session
}

// session is one loaded SavedModel; TF sessions are safe for concurrent Run, but
// separate sessions let a pool size bound the work in flight per model.
type session struct {
	saved                                                   *tf.SavedModel
	inputX, targetID, maxSteps, seqLen, keepProb, batchSize tf.Output
	predAll                                                 tf.Output
	step                                                    *stepTensors // nil: no step signature (see step.go)
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
	sig, err := info.Signature(cfg.Tag, cfg.Signature)
	if err != nil {
		return nil, err
	}
	numSkills, err := checkContract(info.Dir, sig, cfg.Names)
	if err != nil {
		return nil, err
	}
	m := &Model{Name: info.Name, Version: info.Version, Dir: info.Dir, NumSkills: numSkills,
		sessions: make(chan *session, cfg.Sessions)}
	for range cfg.Sessions {
		s, err := loadSession(info.Dir, cfg)
		if err != nil {
			m.Close()
			return nil, err
		}
		m.all = append(m.all, s)
		m.sessions <- s
	}
	return m, nil
}

// checkContract verifies dtypes and ranks, and derives num_skills from pred_all
// (or input_x's depth / 2 when pred_all's last dimension is unknown).
func checkContract(dir string, sig SignatureInfo, n Names) (int, error) {
	want := []struct {
		key, dtype string
		rank       int
	}{
		{n.InputX, "float32", 3}, {n.TargetID, "int32", 2}, {n.MaxSteps, "int32", 0},
		{n.SequenceLen, "int32", 1}, {n.KeepProb, "float32", 0}, {n.BatchSize, "int32", 0},
		{n.PredAll, "float32", 3},
	}
	var errs []error
	for _, w := range want {
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

func loadSession(dir string, cfg Config) (*session, error) {
	saved, err := tf.LoadSavedModel(dir, []string{cfg.Tag}, &tf.SessionOptions{Config: cfg.SessionConfig})
	if err != nil {
		return nil, fmt.Errorf("%s: loading SavedModel: %w", dir, err)
	}
	sig := saved.Signatures[cfg.Signature]
	s := &session{saved: saved, step: lookupStep(dir, saved)}
	var errs []error
	lookup := func(infos map[string]tf.TensorInfo, key string) tf.Output {
		name := infos[key].Name
		opName, index, _ := strings.Cut(name, ":")
		op := saved.Graph.Operation(opName)
		if op == nil {
			errs = append(errs, fmt.Errorf("%s: signature names tensor %q but the graph has no op %q", dir, name, opName))
			return tf.Output{}
		}
		i := 0
		if index != "" {
			fmt.Sscan(index, &i)
		}
		return op.Output(i)
	}
	n := cfg.Names
	s.inputX = lookup(sig.Inputs, n.InputX)
	s.targetID = lookup(sig.Inputs, n.TargetID)
	s.maxSteps = lookup(sig.Inputs, n.MaxSteps)
	s.seqLen = lookup(sig.Inputs, n.SequenceLen)
	s.keepProb = lookup(sig.Inputs, n.KeepProb)
	s.batchSize = lookup(sig.Inputs, n.BatchSize)
	s.predAll = lookup(sig.Outputs, n.PredAll)
	if err := errors.Join(errs...); err != nil {
		saved.Session.Close()
		return nil, err
	}
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

// Inputs is one padded batch laid out per the model contract.
type Inputs struct {
	Size, Steps int       // B and T
	InputX      []float32 // [B, T, 2·S]
	TargetID    []int32   // [B, T]
	SeqLen      []int32   // [B]
}

func (in Inputs) check(numSkills int) error {
	var errs []error
	if in.Size < 1 || in.Steps < 1 {
		errs = append(errs, fmt.Errorf("batch %d×%d is empty", in.Size, in.Steps))
	}
	if len(in.InputX) != in.Size*in.Steps*2*numSkills {
		errs = append(errs, fmt.Errorf("input_x has %d values, want %d×%d×%d", len(in.InputX), in.Size, in.Steps, 2*numSkills))
	}
	if len(in.TargetID) != in.Size*in.Steps {
		errs = append(errs, fmt.Errorf("target_id has %d values, want %d×%d", len(in.TargetID), in.Size, in.Steps))
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

// Predict runs one batch and fills out. ctx bounds the wait for a free session;
// a run that has started finishes.
func (m *Model) Predict(ctx context.Context, in Inputs, out Outputs) error {
	s := m.NumSkills
	if err := errors.Join(in.check(s), out.check(in, s)); err != nil {
		return fmt.Errorf("model %s/%s: %w", m.Name, m.Version, err)
	}
	var sess *session
	select {
	case sess = <-m.sessions:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { m.sessions <- sess }()

	feeds, err := sess.feeds(in, s)
	if err != nil {
		return err
	}
	fetched, err := sess.saved.Session.Run(feeds, []tf.Output{sess.predAll}, nil)
	if err != nil {
		return fmt.Errorf("model %s/%s: run: %w", m.Name, m.Version, err)
	}
	if shape := fetched[0].Shape(); len(shape) != 3 || shape[0] != int64(in.Size) || shape[1] != int64(in.Steps) || shape[2] != int64(s) {
		return fmt.Errorf("model %s/%s: pred_all has shape %v, want [%d %d %d]", m.Name, m.Version, shape, in.Size, in.Steps, s)
	}
	return copyRows(fetched[0], in, s, out)
}

func (s *session) feeds(in Inputs, numSkills int) (map[tf.Output]*tf.Tensor, error) {
	b, t := int64(in.Size), int64(in.Steps)
	inputX, err := tf.ReadTensor(tf.Float, []int64{b, t, int64(2 * numSkills)}, bytes.NewReader(asBytes(in.InputX)))
	if err != nil {
		return nil, err
	}
	targetID, err := tf.ReadTensor(tf.Int32, []int64{b, t}, bytes.NewReader(asBytes(in.TargetID)))
	if err != nil {
		return nil, err
	}
	seqLen, err := tf.ReadTensor(tf.Int32, []int64{b}, bytes.NewReader(asBytes(in.SeqLen)))
	if err != nil {
		return nil, err
	}
	maxSteps, _ := tf.NewTensor(int32(in.Steps))
	keepProb, _ := tf.NewTensor(float32(1))
	batchSize, _ := tf.NewTensor(int32(in.Size))
	return map[tf.Output]*tf.Tensor{
		s.inputX: inputX, s.targetID: targetID, s.seqLen: seqLen,
		s.maxSteps: maxSteps, s.keepProb: keepProb, s.batchSize: batchSize,
	}, nil
}

// asBytes views a numeric slice as its little-endian bytes without copying;
// ReadTensor then makes the single copy into TensorFlow's buffer.
func asBytes[T float32 | int32](v []T) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*4)
}

// copyRows copies the selected rows of pred_all [B, T, S]. WriteContentsTo hands
// TensorFlow's buffer to the writer (bytes.Reader.WriteTo writes it in one call),
// so only the selected rows are copied, never the whole tensor.
func copyRows(predAll *tf.Tensor, in Inputs, numSkills int, out Outputs) error {
	w := &rowPicker{in: in, numSkills: numSkills, out: out}
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
		p.pending = nil
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
