package modelserver

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	tensorpb "github.com/wamuir/graft/tensorflow/core/framework/tensor_go_proto"
	shapepb "github.com/wamuir/graft/tensorflow/core/framework/tensor_shape_go_proto"
	typespb "github.com/wamuir/graft/tensorflow/core/framework/types_go_proto"
)

const testSkills = 3

func shape(dims ...int) *shapepb.TensorShapeProto {
	s := &shapepb.TensorShapeProto{}
	for _, d := range dims {
		s.Dim = append(s.Dim, &shapepb.TensorShapeProto_Dim{Size: int64(d)})
	}
	return s
}

// floats encodes as tf.make_tensor_proto does for an array: tensor_content.
func floats(v []float32, dims ...int) *tensorpb.TensorProto {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return &tensorpb.TensorProto{Dtype: typespb.DataType_DT_FLOAT, TensorShape: shape(dims...), TensorContent: b}
}

func ints(v []int32, dims ...int) *tensorpb.TensorProto {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return &tensorpb.TensorProto{Dtype: typespb.DataType_DT_INT32, TensorShape: shape(dims...), TensorContent: b}
}

// scalars are sent by the origin's client as typed values, not content.
func intScalar(v int32) *tensorpb.TensorProto {
	return &tensorpb.TensorProto{Dtype: typespb.DataType_DT_INT32, TensorShape: shape(), IntVal: []int32{v}}
}
func floatScalar(v float32) *tensorpb.TensorProto {
	return &tensorpb.TensorProto{Dtype: typespb.DataType_DT_FLOAT, TensorShape: shape(), FloatVal: []float32{v}}
}

// originRequest is two students padded to T=4: (skill 1 right, skill 2
// wrong) and (skill 0 wrong, skill 2 right, skill 2 right).
func originRequest() map[string]*tensorpb.TensorProto {
	const s, t = testSkills, 4
	x := make([]float32, 2*t*2*s)
	hot := func(row, step, skill, correct int) { x[(row*t+step)*2*s+skill+s*correct] = 1 }
	hot(0, 0, 1, 1)
	hot(0, 1, 2, 0)
	hot(1, 0, 0, 0)
	hot(1, 1, 2, 1)
	hot(1, 2, 2, 1)
	return map[string]*tensorpb.TensorProto{
		"input_x":      floats(x, 2, t, 2*s),
		"target_id":    ints([]int32{2, 0, 0, 0, 2, 2, 0, 0}, 2, t),
		"max_steps":    intScalar(t),
		"sequence_len": ints([]int32{2, 3}, 2),
		"keep_prob":    floatScalar(1),
		"batch_size":   intScalar(2),
	}
}

func TestDecodeTheOriginsRequest(t *testing.T) {
	got, err := decodeInputs(SignaturePredict, originRequest(), testSkills, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got.rows != 2 || got.steps != 4 || len(got.seqs) != 2 {
		t.Fatalf("decoded %d×%d with %d rows, want 2×4", got.rows, got.steps, len(got.seqs))
	}
	want := []sequence{{skills: []int32{1, 2}, correct: []int8{1, 0}}, {skills: []int32{0, 2, 2}, correct: []int8{0, 1, 1}}}
	for i, w := range want {
		g := got.seqs[i]
		if len(g.skills) != len(w.skills) {
			t.Fatalf("row %d: %d steps, want %d (unpadded by sequence_len)", i, len(g.skills), len(w.skills))
		}
		for k := range w.skills {
			if g.skills[k] != w.skills[k] || g.correct[k] != w.correct[k] {
				t.Fatalf("row %d step %d: skill %d correct %d, want %d %d", i, k, g.skills[k], g.correct[k], w.skills[k], w.correct[k])
			}
		}
	}
}

func TestDecodePredictIDsAndTypedValues(t *testing.T) {
	req := map[string]*tensorpb.TensorProto{
		// typed int_val instead of content, as a hand-built client may send
		"skill_id":     {Dtype: typespb.DataType_DT_INT32, TensorShape: shape(1, 3), IntVal: []int32{2, 1, 0}},
		"correct":      {Dtype: typespb.DataType_DT_INT32, TensorShape: shape(1, 3), IntVal: []int32{1, 0, 0}},
		"sequence_len": {Dtype: typespb.DataType_DT_INT32, TensorShape: shape(1), IntVal: []int32{2}},
	}
	got, err := decodeInputs(SignaturePredictIDs, req, testSkills, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.seqs[0]; len(s.skills) != 2 || s.skills[0] != 2 || s.skills[1] != 1 || s.correct[0] != 1 || s.correct[1] != 0 {
		t.Fatalf("row %+v, want skills [2 1] correct [1 0]", s)
	}
}

// Every hostile request is refused with a message naming the input.
func TestHostileRequestsNameTheirInput(t *testing.T) {
	cases := []struct {
		name   string
		change func(map[string]*tensorpb.TensorProto)
		want   string
	}{
		{"empty request", func(r map[string]*tensorpb.TensorProto) { clear(r) }, "needs input input_x"},
		{"unknown input", func(r map[string]*tensorpb.TensorProto) { r["inputs"] = intScalar(1) }, "input inputs is not an input of signature predict"},
		{"missing input", func(r map[string]*tensorpb.TensorProto) { delete(r, "keep_prob") }, "needs input keep_prob"},
		{"wrong dtype", func(r map[string]*tensorpb.TensorProto) { r["input_x"].Dtype = typespb.DataType_DT_INT32 }, "input input_x has dtype int32; the signature takes float32"},
		{"int64 ids", func(r map[string]*tensorpb.TensorProto) { r["target_id"].Dtype = typespb.DataType_DT_INT64 }, "input target_id has dtype int64"},
		{"wrong rank", func(r map[string]*tensorpb.TensorProto) { r["sequence_len"].TensorShape = shape(1, 2) }, "input sequence_len has rank 2"},
		{"wrong width", func(r map[string]*tensorpb.TensorProto) {
			r["input_x"] = floats(make([]float32, 2*4*5), 2, 4, 5)
		}, "input input_x has width 5; the model takes 2·num_skills = 6"},
		{"batch_size is not the rows", func(r map[string]*tensorpb.TensorProto) { r["batch_size"] = intScalar(3) }, "input batch_size is 3 but input_x has 2 rows"},
		{"max_steps is not the time axis", func(r map[string]*tensorpb.TensorProto) { r["max_steps"] = intScalar(5) }, "input max_steps is 5 but input_x has 4 steps"},
		{"sequence_len zero", func(r map[string]*tensorpb.TensorProto) { r["sequence_len"] = ints([]int32{0, 3}, 2) }, "input sequence_len[0] = 0 is outside [1, 4]"},
		{"sequence_len past max_steps", func(r map[string]*tensorpb.TensorProto) { r["sequence_len"] = ints([]int32{2, 5}, 2) }, "input sequence_len[1] = 5 is outside [1, 4]"},
		{"sequence_len count", func(r map[string]*tensorpb.TensorProto) { r["sequence_len"] = ints([]int32{2}, 1) }, "input sequence_len has 1 values for 2 rows"},
		{"target_id shape", func(r map[string]*tensorpb.TensorProto) { r["target_id"] = ints(make([]int32, 6), 2, 3) }, "input target_id has shape [2, 3]"},
		{"target_id out of range", func(r map[string]*tensorpb.TensorProto) { r["target_id"] = ints([]int32{9, 0, 0, 0, 0, 0, 0, 0}, 2, 4) }, "input target_id[0, 0] = 9"},
		{"truncated tensor_content", func(r map[string]*tensorpb.TensorProto) {
			r["input_x"].TensorContent = r["input_x"].TensorContent[:10]
		}, "input input_x: tensor_content has 10 bytes; shape [2, 4, 6] of float32 needs 192"},
		{"negative dimension", func(r map[string]*tensorpb.TensorProto) { r["input_x"].TensorShape = shape(2, -4, 6) }, "input input_x: dimension 1 has size -4"},
		{"huge dimension", func(r map[string]*tensorpb.TensorProto) { r["input_x"].TensorShape = shape(2, 1<<40, 6) }, "input input_x: its shape holds more than"},
		{"huge shape of one value", func(r map[string]*tensorpb.TensorProto) {
			r["input_x"] = &tensorpb.TensorProto{Dtype: typespb.DataType_DT_FLOAT, TensorShape: shape(1<<15, 1<<15, 6), FloatVal: []float32{0}}
		}, "holds more than"},
		{"unknown rank", func(r map[string]*tensorpb.TensorProto) {
			r["batch_size"].TensorShape = &shapepb.TensorShapeProto{UnknownRank: true}
		}, "input batch_size has an unknown rank"},
		{"too many typed values", func(r map[string]*tensorpb.TensorProto) { r["batch_size"].IntVal = []int32{2, 2} }, "input batch_size: int_val has 2 values; its shape holds 1"},
		{"keep_prob below one", func(r map[string]*tensorpb.TensorProto) { r["keep_prob"] = floatScalar(0.5) }, "input keep_prob is 0.5; at inference it must be 1.0"},
		{"two ones in a step", func(r map[string]*tensorpb.TensorProto) {
			x := r["input_x"]
			binary.LittleEndian.PutUint32(x.TensorContent[0:], math.Float32bits(1)) // row 0 step 0: index 0 beside its 1 at 1+3
		}, "input input_x[0, 0] is not one-hot"},
		{"a real step all zero", func(r map[string]*tensorpb.TensorProto) {
			clear(r["input_x"].TensorContent[4*6 : 4*12]) // row 0 step 1
		}, "input input_x[0, 1] is all zero but sequence_len[0] = 2"},
		{"a value that is not one", func(r map[string]*tensorpb.TensorProto) {
			binary.LittleEndian.PutUint32(r["input_x"].TensorContent[4*(6+2):], math.Float32bits(0.5)) // row 0 step 1 skill 2
		}, "input input_x[0, 1] is not one-hot (value 0.5"},
		{"empty batch", func(r map[string]*tensorpb.TensorProto) {
			r["input_x"] = floats(nil, 0, 4, 6)
			r["target_id"] = ints(nil, 0, 4)
			r["sequence_len"] = ints(nil, 0)
			r["batch_size"] = intScalar(0)
		}, "the request's batch is 0 rows × 4 steps"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := originRequest()
			c.change(req)
			_, err := decodeInputs(SignaturePredict, req, testSkills, 1<<20)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestPredictIDsValuesAreChecked(t *testing.T) {
	base := func() map[string]*tensorpb.TensorProto {
		return map[string]*tensorpb.TensorProto{"skill_id": ints([]int32{1, 2}, 1, 2), "correct": ints([]int32{0, 1}, 1, 2), "sequence_len": ints([]int32{2}, 1)}
	}
	for name, c := range map[string]struct {
		change func(map[string]*tensorpb.TensorProto)
		want   string
	}{
		"skill out of range": {func(r map[string]*tensorpb.TensorProto) { r["skill_id"] = ints([]int32{1, 3}, 1, 2) }, "input skill_id[0, 1] = 3 is outside [0, 3)"},
		"correct not 0/1":    {func(r map[string]*tensorpb.TensorProto) { r["correct"] = ints([]int32{2, 1}, 1, 2) }, "input correct[0, 0] = 2; it must be 0 or 1"},
		"origin's inputs":    {func(r map[string]*tensorpb.TensorProto) { r["input_x"] = floats(nil, 0) }, "input input_x is not an input of signature predict_ids"},
		"more row-steps than a request may hold": {func(r map[string]*tensorpb.TensorProto) {
			// a tiny message asking for a huge answer: the ids filled from one repeated value
			r["skill_id"] = &tensorpb.TensorProto{Dtype: typespb.DataType_DT_INT32, TensorShape: shape(1, 1<<18), IntVal: []int32{0}}
			r["correct"] = &tensorpb.TensorProto{Dtype: typespb.DataType_DT_INT32, TensorShape: shape(1, 1<<18), IntVal: []int32{0}}
			r["sequence_len"] = ints([]int32{1 << 18}, 1)
		}, "the request's batch is 1 rows × 262144 steps, more than the 174762 row-steps"},
	} {
		t.Run(name, func(t *testing.T) {
			r := base()
			c.change(r)
			if _, err := decodeInputs(SignaturePredictIDs, r, testSkills, 1<<20); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want one containing %q", err, c.want)
			}
		})
	}
}

// FuzzDecodeInputs feeds arbitrary tensors through the request decoder: it
// must never panic, and whatever it accepts must be rows the batcher takes.
func FuzzDecodeInputs(f *testing.F) {
	origin := originRequest()
	f.Add(origin["input_x"].TensorContent, origin["sequence_len"].TensorContent, int64(2), int64(4), int64(6), int32(4), int32(2), float32(1))
	f.Add([]byte{1, 2, 3}, []byte{}, int64(-1), int64(1<<40), int64(6), int32(0), int32(-1), float32(0.5))
	f.Fuzz(func(t *testing.T, x, lens []byte, b, steps, width int64, maxSteps, batch int32, keep float32) {
		dims := func(d ...int64) *shapepb.TensorShapeProto {
			s := &shapepb.TensorShapeProto{}
			for _, v := range d {
				s.Dim = append(s.Dim, &shapepb.TensorShapeProto_Dim{Size: v})
			}
			return s
		}
		req := map[string]*tensorpb.TensorProto{
			"input_x":      {Dtype: typespb.DataType_DT_FLOAT, TensorShape: dims(b, steps, width), TensorContent: x},
			"target_id":    {Dtype: typespb.DataType_DT_INT32, TensorShape: dims(b, steps)},
			"max_steps":    intScalar(maxSteps),
			"sequence_len": {Dtype: typespb.DataType_DT_INT32, TensorShape: dims(b), TensorContent: lens},
			"keep_prob":    floatScalar(keep),
			"batch_size":   intScalar(batch),
		}
		got, err := decodeInputs(SignaturePredict, req, testSkills, 1<<16)
		if err != nil {
			return
		}
		if len(got.seqs) != got.rows || got.rows < 1 || got.steps < 1 {
			t.Fatalf("accepted %d rows of a %d×%d request", len(got.seqs), got.rows, got.steps)
		}
		for _, s := range got.seqs {
			if len(s.skills) < 1 || len(s.skills) > got.steps || len(s.skills) != len(s.correct) {
				t.Fatalf("accepted a row of %d steps (T=%d)", len(s.skills), got.steps)
			}
			for i, k := range s.skills {
				if k < 0 || k >= testSkills || (s.correct[i] != 0 && s.correct[i] != 1) {
					t.Fatalf("accepted skill %d correct %d", k, s.correct[i])
				}
			}
		}
	})
}
