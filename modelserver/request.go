package modelserver

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	tensorpb "github.com/wamuir/graft/tensorflow/core/framework/tensor_go_proto"
	typespb "github.com/wamuir/graft/tensorflow/core/framework/types_go_proto"
)

// Signatures the front door batches: the origin's one-hot "predict" and the
// compact "predict_ids" (README, "The model"). Both answer pred_all.
const (
	SignaturePredict    = "predict"
	SignaturePredictIDs = "predict_ids"
	// defaultSignature is what an empty signature_name means in TF Serving.
	defaultSignature = "serving_default"
	outputPredAll    = "pred_all"
)

// input is one input of a signature as a request must send it.
type input struct {
	name  string
	dtype typespb.DataType
	rank  int
}

var signatureInputs = map[string][]input{
	SignaturePredict: {
		{"input_x", typespb.DataType_DT_FLOAT, 3}, {"target_id", typespb.DataType_DT_INT32, 2},
		{"max_steps", typespb.DataType_DT_INT32, 0}, {"sequence_len", typespb.DataType_DT_INT32, 1},
		{"keep_prob", typespb.DataType_DT_FLOAT, 0}, {"batch_size", typespb.DataType_DT_INT32, 0},
	},
	SignaturePredictIDs: {
		{"skill_id", typespb.DataType_DT_INT32, 2}, {"correct", typespb.DataType_DT_INT32, 2},
		{"sequence_len", typespb.DataType_DT_INT32, 1},
	},
}

// sequence is one row of a request, unpadded: its real steps.
type sequence struct {
	skills  []int32
	correct []int8
}

// decodedRequest is a Predict request's rows, ready for the batcher, and the
// shape the response must have.
type decodedRequest struct {
	rows, steps int // B and T of the request: the response is [B, T, num_skills]
	seqs        []sequence
}

// decodeInputs checks a request's inputs against signature sig and a model
// of numSkills skills and unpads its rows by sequence_len. Every problem is
// an invalid-argument error naming the input: the request is the client's
// to fix.
func decodeInputs(sig string, inputs map[string]*tensorpb.TensorProto, numSkills, maxElements int) (decodedRequest, error) {
	want := signatureInputs[sig]
	var names []string
	for _, in := range want {
		names = append(names, in.name)
	}
	var unknown, missing []string
	for key := range inputs {
		if !slices.Contains(names, key) {
			unknown = append(unknown, key)
		}
	}
	for _, name := range names {
		if inputs[name] == nil {
			missing = append(missing, name)
		}
	}
	sort.Strings(unknown)
	switch {
	case len(unknown) > 0:
		return decodedRequest{}, fmt.Errorf("input %s is not an input of signature %s, which takes %s", strings.Join(unknown, ", "), sig, strings.Join(names, ", "))
	case len(missing) > 0:
		return decodedRequest{}, fmt.Errorf("signature %s needs input %s (it takes %s)", sig, strings.Join(missing, ", "), strings.Join(names, ", "))
	}
	t := map[string]tensor{}
	for _, in := range want {
		v, err := decodeTensor(in.name, inputs[in.name], in.dtype, maxElements)
		if err != nil {
			return decodedRequest{}, err
		}
		if len(v.shape) != in.rank {
			return decodedRequest{}, fmt.Errorf("input %s has rank %d (shape %s); signature %s takes rank %d", in.name, len(v.shape), shapeText(v.shape), sig, in.rank)
		}
		t[in.name] = v
	}
	if sig == SignaturePredict {
		return decodeOneHot(t, numSkills, maxElements)
	}
	return decodeIDs(t, numSkills, maxElements)
}

// decodeOneHot reads the origin's request: input_x [B, T, 2·S] one-hot of
// skill + S·correct, with the scalars checked against the tensors.
func decodeOneHot(t map[string]tensor, numSkills, maxElements int) (decodedRequest, error) {
	x := t["input_x"]
	b, steps, width := x.shape[0], x.shape[1], x.shape[2]
	if width != 2*numSkills {
		return decodedRequest{}, fmt.Errorf("input input_x has width %d; the model takes 2·num_skills = %d (one-hot of skill + num_skills·correct)", width, 2*numSkills)
	}
	if err := checkRows(b, steps, numSkills, maxElements); err != nil {
		return decodedRequest{}, err
	}
	if err := sameShape("target_id", t["target_id"].shape, b, steps); err != nil {
		return decodedRequest{}, err
	}
	for i, id := range t["target_id"].ints {
		if id < 0 || int(id) >= numSkills {
			return decodedRequest{}, fmt.Errorf("input target_id[%d, %d] = %d is outside [0, %d)", i/steps, i%steps, id, numSkills)
		}
	}
	if v := t["max_steps"].ints[0]; int(v) != steps {
		return decodedRequest{}, fmt.Errorf("input max_steps is %d but input_x has %d steps; max_steps must equal the time axis", v, steps)
	}
	if v := t["batch_size"].ints[0]; int(v) != b {
		return decodedRequest{}, fmt.Errorf("input batch_size is %d but input_x has %d rows; batch_size must equal the number of rows", v, b)
	}
	if v := t["keep_prob"].floats[0]; v != 1 {
		return decodedRequest{}, fmt.Errorf("input keep_prob is %v; at inference it must be 1.0 (dropout off)", v)
	}
	lens, err := sequenceLens(t["sequence_len"], b, steps)
	if err != nil {
		return decodedRequest{}, err
	}
	out := decodedRequest{rows: b, steps: steps, seqs: make([]sequence, b)}
	for row, n := range lens {
		seq := sequence{skills: make([]int32, n), correct: make([]int8, n)}
		for step := range n {
			hot := x.floats[(row*steps+step)*width : (row*steps+step+1)*width]
			at := -1
			for k, v := range hot {
				switch {
				case v == 0:
				case v == 1 && at < 0:
					at = k
				default:
					return decodedRequest{}, fmt.Errorf("input input_x[%d, %d] is not one-hot (value %v at index %d); each real step holds a single 1 at skill + num_skills·correct", row, step, v, k)
				}
			}
			if at < 0 {
				return decodedRequest{}, fmt.Errorf("input input_x[%d, %d] is all zero but sequence_len[%d] = %d counts it as a real step", row, step, row, n)
			}
			seq.skills[step], seq.correct[step] = int32(at%numSkills), int8(at/numSkills)
		}
		out.seqs[row] = seq
	}
	return out, nil
}

// decodeIDs reads predict_ids: skill_id and correct [B, T].
func decodeIDs(t map[string]tensor, numSkills, maxElements int) (decodedRequest, error) {
	skills := t["skill_id"]
	b, steps := skills.shape[0], skills.shape[1]
	if err := checkRows(b, steps, numSkills, maxElements); err != nil {
		return decodedRequest{}, err
	}
	if err := sameShape("correct", t["correct"].shape, b, steps); err != nil {
		return decodedRequest{}, err
	}
	lens, err := sequenceLens(t["sequence_len"], b, steps)
	if err != nil {
		return decodedRequest{}, err
	}
	out := decodedRequest{rows: b, steps: steps, seqs: make([]sequence, b)}
	for row, n := range lens {
		seq := sequence{skills: make([]int32, n), correct: make([]int8, n)}
		for step := range n {
			skill, correct := skills.ints[row*steps+step], t["correct"].ints[row*steps+step]
			if skill < 0 || int(skill) >= numSkills {
				return decodedRequest{}, fmt.Errorf("input skill_id[%d, %d] = %d is outside [0, %d)", row, step, skill, numSkills)
			}
			if correct != 0 && correct != 1 {
				return decodedRequest{}, fmt.Errorf("input correct[%d, %d] = %d; it must be 0 or 1", row, step, correct)
			}
			seq.skills[step], seq.correct[step] = skill, int8(correct)
		}
		out.seqs[row] = seq
	}
	return out, nil
}

// checkRows bounds the request's B×T: its answer holds B·T·num_skills
// floats, and a small request could otherwise ask for gigabytes (a shape
// filled from one repeated value). The bound is what the origin's one-hot
// input_x of the same B×T may hold under --max-request-bytes.
func checkRows(b, steps, numSkills, maxElements int) error {
	if b < 1 || steps < 1 {
		return fmt.Errorf("the request's batch is %d rows × %d steps; send at least one row of at least one step", b, steps)
	}
	if limit := maxElements / (2 * numSkills); b*steps > limit {
		return fmt.Errorf("the request's batch is %d rows × %d steps, more than the %d row-steps a request may hold for a model of %d skills (--max-request-bytes); send fewer or shorter rows",
			b, steps, limit, numSkills)
	}
	return nil
}

func sameShape(name string, shape []int, b, steps int) error {
	if shape[0] != b || shape[1] != steps {
		return fmt.Errorf("input %s has shape %s; it must be [%d, %d] like the other inputs", name, shapeText(shape), b, steps)
	}
	return nil
}

func sequenceLens(t tensor, b, steps int) ([]int, error) {
	if t.shape[0] != b {
		return nil, fmt.Errorf("input sequence_len has %d values for %d rows", t.shape[0], b)
	}
	lens := make([]int, b)
	for i, n := range t.ints {
		if n < 1 || int(n) > steps {
			return nil, fmt.Errorf("input sequence_len[%d] = %d is outside [1, %d] (max_steps)", i, n, steps)
		}
		lens[i] = int(n)
	}
	return lens, nil
}
