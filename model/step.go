package model

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"

	tf "github.com/wamuir/graft/tensorflow"
)

// StepSignature is the signature that advances carried LSTM state by one
// interaction per row (event mode). Its keys: inputs skill_id and correct
// (int32 [B]) and state_c_i, state_h_i (float32 [B, H_i]) for every layer i;
// outputs the same state keys (the new state) and mastery (float32 [B, S]).
const StepSignature = "step"

// errNoStep is returned by Step for a model exported before the step signature.
var errNoStep = errors.New("the model has no \"" + StepSignature + "\" signature (event mode needs it); " +
	"re-export it with `python -m dkt.upgrade --model DIR` (models trained by dkt.train; " +
	"a checkpoint converted from the origin keeps the origin's graph and has only predict)")

// StepInputs is one interaction per row, and the state each row carries.
type StepInputs struct {
	SkillID, Correct []int32 // [B]
	// State is [B, StateSize]: per row, every layer's c then h, in layer order.
	// All zeros is a student with no history.
	State []float32
}

// StepOutputs receives the state after the interaction and the mastery it
// gives. State may be the same slice as StepInputs.State (updated in place):
// the inputs are copied into TensorFlow before the run.
type StepOutputs struct {
	State   []float32 // [B, StateSize]
	Mastery []float32 // [B, S]: P(correct on skill k next), as predict's pred_all[b, t, :]
}

// stepTensors is the step signature resolved in one session, with the buffers
// every run reuses. A session is used by one caller at a time (the pool), so
// the scratch needs no lock.
type stepTensors struct {
	err              error // set when the signature exists but breaks the contract
	skillID, correct tf.Output
	stateIn          []tf.Output // per layer c then h, layer order
	stateOut         []tf.Output // same order as stateIn
	mastery          tf.Output
	widths           []int // H of each stateIn entry
	stateSize        int   // Σ widths
	masteryWidth     int   // S as the signature declares it

	feeds    map[tf.Output]*tf.Tensor
	fetches  []tf.Output
	shape    []int64 // [B] for skill_id/correct
	readers  []rowColumns
	writers  []rowColumns
	shapes   [][]int64 // [B, H] per state input
	contents bytesWriter
}

// signatureLookup resolves the keys of one signature to graph outputs and
// gathers every way the signature breaks its contract, so that all of them
// are reported at once.
type signatureLookup struct {
	name  string
	saved *tf.SavedModel
	sig   tf.Signature
	errs  []error
}

// tensor resolves key on one side ("input" or "output") and checks its dtype
// and rank.
func (l *signatureLookup) tensor(infos map[string]tf.TensorInfo, side, key string, dtype tf.DataType, rank int) (tf.Output, tf.Shape, bool) {
	info, ok := infos[key]
	switch {
	case !ok:
		l.errs = append(l.errs, fmt.Errorf("signature %q has no %s %q", l.name, side, key))
	case info.DType != dtype:
		l.errs = append(l.errs, fmt.Errorf("signature %q %s %q has dtype %v, want %v", l.name, side, key, info.DType, dtype))
	case info.Shape.NumDimensions() != rank:
		l.errs = append(l.errs, fmt.Errorf("signature %q %s %q has shape %v, want rank %d", l.name, side, key, info.Shape, rank))
	default:
		out, err := graphOutput(l.saved.Graph, info.Name)
		if err != nil {
			l.errs = append(l.errs, fmt.Errorf("signature %q: %w", l.name, err))
			return tf.Output{}, tf.Shape{}, false
		}
		return out, info.Shape, true
	}
	return tf.Output{}, tf.Shape{}, false
}

// carriedState is the LSTM state a signature takes and returns: state_c_i,
// state_h_i for every layer i, in and out under the same keys.
type carriedState struct {
	in, out   []tf.Output // per layer c then h, layer order
	widths    []int       // H of each entry
	stateSize int         // Σ widths
}

func (l *signatureLookup) state() carriedState {
	var cs carriedState
	// Layers are numbered from 0 without gaps; the count is where state_c_i stops.
	for layer := 0; ; layer++ {
		if _, more := l.sig.Inputs["state_c_"+strconv.Itoa(layer)]; !more {
			if layer == 0 {
				l.errs = append(l.errs, fmt.Errorf("signature %q has no input state_c_0: it carries no LSTM state", l.name))
			}
			return cs
		}
		for _, key := range []string{"state_c_" + strconv.Itoa(layer), "state_h_" + strconv.Itoa(layer)} {
			in, inShape, okIn := l.tensor(l.sig.Inputs, "input", key, tf.Float, 2)
			out, outShape, okOut := l.tensor(l.sig.Outputs, "output", key, tf.Float, 2)
			if !okIn || !okOut {
				continue
			}
			width := inShape.Size(1)
			if width < 1 || outShape.Size(1) != width {
				l.errs = append(l.errs, fmt.Errorf("signature %q state %q is [?, %d] in and [?, %d] out; want the same known width",
					l.name, key, width, outShape.Size(1)))
				continue
			}
			cs.in, cs.out = append(cs.in, in), append(cs.out, out)
			cs.widths = append(cs.widths, int(width))
			cs.stateSize += int(width)
		}
	}
}

// columns returns a reader/writer per state entry over rows of stateSize
// floats (see rowColumns), and the reusable [B, H] shape of each.
func (cs carriedState) columns() (readers, writers []rowColumns, shapes [][]int64) {
	readers = make([]rowColumns, len(cs.widths))
	writers = make([]rowColumns, len(cs.widths))
	shapes = make([][]int64, len(cs.widths))
	offset := 0
	for i, w := range cs.widths {
		readers[i] = rowColumns{rowWidth: cs.stateSize, offset: offset, width: w}
		writers[i] = rowColumns{rowWidth: cs.stateSize, offset: offset, width: w}
		shapes[i] = []int64{0, int64(w)}
		offset += w
	}
	return readers, writers, shapes
}

// lookupStep resolves the step signature of one loaded SavedModel: nil when the
// model has none; a non-nil err field when it exists but does not match the
// contract (Step reports it; Predict is unaffected).
func lookupStep(dir string, saved *tf.SavedModel) *stepTensors {
	sig, ok := saved.Signatures[StepSignature]
	if !ok {
		return nil
	}
	st := &stepTensors{}
	l := &signatureLookup{name: StepSignature, saved: saved, sig: sig}
	st.skillID, _, _ = l.tensor(sig.Inputs, "input", "skill_id", tf.Int32, 1)
	st.correct, _, _ = l.tensor(sig.Inputs, "input", "correct", tf.Int32, 1)
	if out, shape, ok := l.tensor(sig.Outputs, "output", "mastery", tf.Float, 2); ok {
		st.mastery, st.masteryWidth = out, int(shape.Size(1))
	}
	state := l.state()
	st.stateIn, st.stateOut, st.widths, st.stateSize = state.in, state.out, state.widths, state.stateSize
	if err := errors.Join(l.errs...); err != nil {
		st.err = fmt.Errorf("%s: %w", dir, err)
		return st
	}
	st.feeds = make(map[tf.Output]*tf.Tensor, 2+len(st.stateIn))
	st.fetches = append(append([]tf.Output{}, st.stateOut...), st.mastery)
	st.shape = make([]int64, 1)
	st.readers, st.writers, st.shapes = state.columns()
	return st
}

// stepInfo is the step signature of the first session: every session loaded the
// same SavedModel, so they agree.
func (m *Model) stepInfo() *stepTensors {
	if len(m.all) == 0 {
		return nil
	}
	return m.all[0].step
}

// HasStep says whether the model can run Step.
func (m *Model) HasStep() bool {
	st := m.stepInfo()
	return st != nil && st.err == nil && st.masteryWidth == m.NumSkills
}

// StateSize is the length of one row's carried state: Σ over layers of 2·H
// (c then h per layer, in layer order); 0 when the model has no step signature.
func (m *Model) StateSize() int {
	if !m.HasStep() {
		return 0
	}
	return m.stepInfo().stateSize
}

// stepError says why Step cannot run on this model, or nil.
func (m *Model) stepError() error {
	st := m.stepInfo()
	switch {
	case st == nil:
		return fmt.Errorf("model %s/%s (%s): %w", m.Name, m.Version, m.Dir, errNoStep)
	case st.err != nil:
		return fmt.Errorf("model %s/%s: %w; re-export it with `python -m dkt.upgrade --model DIR`", m.Name, m.Version, st.err)
	case st.masteryWidth != m.NumSkills:
		return fmt.Errorf("model %s/%s: step's mastery has %d skills but predict's pred_all has %d; re-export it with `python -m dkt.upgrade --model DIR`",
			m.Name, m.Version, st.masteryWidth, m.NumSkills)
	}
	return nil
}

func (in StepInputs) check(out StepOutputs, numSkills, stateSize int) error {
	b := len(in.SkillID)
	var errs []error
	if b < 1 {
		errs = append(errs, errors.New("step batch is empty: pass at least one row"))
	}
	if len(in.Correct) != b {
		errs = append(errs, fmt.Errorf("Correct has %d values, SkillID %d: one of each per row", len(in.Correct), b))
	}
	if len(in.State) != b*stateSize {
		errs = append(errs, fmt.Errorf("StepInputs.State has %d values, want %d rows × StateSize %d", len(in.State), b, stateSize))
	}
	if len(out.State) != b*stateSize {
		errs = append(errs, fmt.Errorf("StepOutputs.State has room for %d values, want %d rows × StateSize %d", len(out.State), b, stateSize))
	}
	if len(out.Mastery) != b*numSkills {
		errs = append(errs, fmt.Errorf("StepOutputs.Mastery has room for %d values, want %d rows × %d skills", len(out.Mastery), b, numSkills))
	}
	// TensorFlow's CPU gather fails on an out-of-range id but a GPU gather
	// returns zeros, so ids are checked here, where the row can be named.
	for row, s := range in.SkillID {
		if s < 0 || int(s) >= numSkills {
			errs = append(errs, fmt.Errorf("row %d: skill_id %d is outside [0, %d)", row, s, numSkills))
			break
		}
	}
	for row, c := range in.Correct {
		if c != 0 && c != 1 {
			errs = append(errs, fmt.Errorf("row %d: correct is %d, want 0 or 1", row, c))
			break
		}
	}
	return errors.Join(errs...)
}

// Step applies one interaction to each row's carried state and returns the new
// state and the mastery after it: for a student whose state came from steps
// 0..t-1, Mastery equals predict's pred_all[t, :] with steps 0..t fed. ctx
// bounds the wait for a free session; a run that has started finishes. After
// an error out.State is undefined (and so is in.State when they share
// memory): callers that keep states step a copy.
func (m *Model) Step(ctx context.Context, in StepInputs, out StepOutputs) error {
	if err := m.stepError(); err != nil {
		return err
	}
	stateSize := m.stepInfo().stateSize
	if err := in.check(out, m.NumSkills, stateSize); err != nil {
		return fmt.Errorf("model %s/%s: step: %w", m.Name, m.Version, err)
	}
	sess, err := m.takeSession(ctx)
	if err != nil {
		return err
	}
	defer m.returnSession(sess)
	st := sess.step
	rows := len(in.SkillID)
	// The feeds map and shape slices are reused; a tensor keeps its shape
	// slice, but the previous run's tensors are no longer used once it ended.
	defer clear(st.feeds)

	st.shape[0] = int64(rows)
	skillID, err := tf.ReadTensor(tf.Int32, st.shape, bytes.NewReader(asBytes(in.SkillID)))
	if err != nil {
		return fmt.Errorf("model %s/%s: step: skill_id: %w", m.Name, m.Version, err)
	}
	correct, err := tf.ReadTensor(tf.Int32, st.shape, bytes.NewReader(asBytes(in.Correct)))
	if err != nil {
		return fmt.Errorf("model %s/%s: step: correct: %w", m.Name, m.Version, err)
	}
	st.feeds[st.skillID], st.feeds[st.correct] = skillID, correct
	for i, o := range st.stateIn {
		r := &st.readers[i]
		r.reset(in.State)
		st.shapes[i][0] = int64(rows)
		t, err := tf.ReadTensor(tf.Float, st.shapes[i], r)
		if err != nil {
			return fmt.Errorf("model %s/%s: step: state input %d: %w", m.Name, m.Version, i, err)
		}
		st.feeds[o] = t
	}
	fetched, err := sess.saved.Session.Run(st.feeds, st.fetches, nil)
	if err != nil {
		return fmt.Errorf("model %s/%s: step: run: %w", m.Name, m.Version, err)
	}
	for i, t := range fetched[:len(st.stateOut)] {
		w := &st.writers[i]
		if shape := t.Shape(); len(shape) != 2 || shape[0] != int64(rows) || shape[1] != int64(w.width) {
			return fmt.Errorf("model %s/%s: step: state output %d has shape %v, want [%d %d]", m.Name, m.Version, i, shape, rows, w.width)
		}
		w.reset(out.State)
		if _, err := t.WriteContentsTo(w); err != nil {
			return fmt.Errorf("model %s/%s: step: reading state output %d: %w", m.Name, m.Version, i, err)
		}
		if w.row != rows {
			return fmt.Errorf("model %s/%s: step: state output %d delivered %d rows, want %d", m.Name, m.Version, i, w.row, rows)
		}
	}
	mastery := fetched[len(fetched)-1]
	if shape := mastery.Shape(); len(shape) != 2 || shape[0] != int64(rows) || shape[1] != int64(m.NumSkills) {
		return fmt.Errorf("model %s/%s: step: mastery has shape %v, want [%d %d]", m.Name, m.Version, shape, rows, m.NumSkills)
	}
	st.contents.reset(asBytes(out.Mastery))
	if _, err := mastery.WriteContentsTo(&st.contents); err != nil || st.contents.n != len(out.Mastery)*4 {
		return fmt.Errorf("model %s/%s: step: reading mastery (%d of %d bytes): %v", m.Name, m.Version, st.contents.n, len(out.Mastery)*4, err)
	}
	// The outputs were read in place from their C buffers: keep them alive
	// until here, then let the feeds go so the collection below frees all.
	runtime.KeepAlive(fetched)
	clear(st.feeds)
	droppedTensors(int64(rows) * int64(4*(2+2*stateSize+m.NumSkills)))
	return nil
}

// rowColumns moves one state tensor [B, width] in and out of the rows of a
// [B, rowWidth] slice, where it occupies columns offset..offset+width. As an
// io.Reader it fills a tensor from the rows; as an io.Writer it scatters a
// tensor's bytes back. TensorFlow reads and writes a tensor's buffer in one
// call (io.ReadFull, bytes.Reader.WriteTo), but pieces of any size work.
type rowColumns struct {
	rowWidth, offset, width int
	rows                    []float32
	row, col                int // position of the next value, in floats
}

func (c *rowColumns) reset(rows []float32) {
	c.rows, c.row, c.col = rows, 0, 0
}

// next returns the bytes of the current row's columns not yet moved.
func (c *rowColumns) next() []byte {
	start := c.row*c.rowWidth + c.offset + c.col
	return asBytes(c.rows[start : start+c.width-c.col])
}

func (c *rowColumns) advance(floats int) {
	c.col += floats
	if c.col == c.width {
		c.row, c.col = c.row+1, 0
	}
}

func (c *rowColumns) Read(p []byte) (int, error) {
	n := 0
	for len(p)-n >= 4 {
		if c.row*c.rowWidth >= len(c.rows) {
			if n == 0 {
				return 0, io.EOF
			}
			break
		}
		moved := copy(p[n:], c.next()) / 4 * 4
		n += moved
		c.advance(moved / 4)
	}
	return n, nil
}

func (c *rowColumns) Write(p []byte) (int, error) {
	n := 0
	for len(p)-n >= 4 {
		if c.row*c.rowWidth >= len(c.rows) {
			return n, fmt.Errorf("state tensor has more than the %d rows the output holds", len(c.rows)/c.rowWidth)
		}
		moved := copy(c.next(), p[n:]) / 4 * 4
		n += moved
		c.advance(moved / 4)
	}
	if n != len(p) {
		return n, errors.New("state tensor arrived in pieces that split a float; not supported")
	}
	return n, nil
}

// bytesWriter copies a tensor's contents into a fixed destination.
type bytesWriter struct {
	dst []byte
	n   int
}

func (w *bytesWriter) reset(dst []byte) { w.dst, w.n = dst, 0 }

func (w *bytesWriter) Write(p []byte) (int, error) {
	if len(p) > len(w.dst)-w.n {
		return 0, fmt.Errorf("tensor has more than the %d bytes its destination holds", len(w.dst))
	}
	w.n += copy(w.dst[w.n:], p)
	return len(p), nil
}
