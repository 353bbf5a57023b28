package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc"

	tensorpb "github.com/wamuir/graft/tensorflow/core/framework/tensor_go_proto"
	shapepb "github.com/wamuir/graft/tensorflow/core/framework/tensor_shape_go_proto"
	typespb "github.com/wamuir/graft/tensorflow/core/framework/types_go_proto"
	apis "github.com/wamuir/graft/tensorflow/serving/apis_go_proto"

	"github.com/dktscore/dktscore/io/records"
)

// originSignature is the signature the origin's client called.
const originSignature = "predict"

// newRequest is the Predict request the origin's client sent for one student
// (B = 1) on the "predict" signature, with T = max(own length, padTo):
//
//	input_x      float32 [1, T, 2·S]  one-hot of skill + S·correct; zeros at padding
//	target_id    int32   [1, T]       skill of the next step; 0 at the last step and padding
//	max_steps    int32   scalar       T
//	sequence_len int32   [1]          the student's length
//	keep_prob    float32 scalar       1.0
//	batch_size   int32   scalar       1
func newRequest(modelName string, numSkills int, s records.Sequence, padTo int) request {
	n := s.Len()
	steps := max(n, padTo)
	width := 2 * numSkills
	inputX := make([]float32, steps*width)
	targetID := make([]int32, steps)
	for t := range n {
		inputX[t*width+int(s.Skills[t])+numSkills*int(s.Correct[t])] = 1
		if t+1 < n {
			targetID[t] = s.Skills[t+1]
		}
	}
	msg := &apis.PredictRequest{
		ModelSpec: &apis.ModelSpec{Name: modelName, SignatureName: originSignature},
		Inputs: map[string]*tensorpb.TensorProto{
			"input_x":      floatTensor([]int{1, steps, width}, inputX),
			"target_id":    intTensor([]int{1, steps}, targetID),
			"max_steps":    intTensor(nil, []int32{int32(steps)}),
			"sequence_len": intTensor([]int{1}, []int32{int32(n)}),
			"keep_prob":    floatTensor(nil, []float32{1}),
			"batch_size":   intTensor(nil, []int32{1}),
		},
	}
	return request{msg: msg, values: steps * numSkills, real: n}
}

// floatTensor and intTensor build a TensorProto as tf.make_tensor_proto does
// from a numpy array: a single value in the typed field (float_val, int_val),
// more as little-endian tensor_content bytes.
func floatTensor(shape []int, vals []float32) *tensorpb.TensorProto {
	p := &tensorpb.TensorProto{Dtype: typespb.DataType_DT_FLOAT, TensorShape: tensorShape(shape)}
	if len(vals) == 1 {
		p.FloatVal = vals
		return p
	}
	p.TensorContent = make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(p.TensorContent[4*i:], math.Float32bits(v))
	}
	return p
}

func intTensor(shape []int, vals []int32) *tensorpb.TensorProto {
	p := &tensorpb.TensorProto{Dtype: typespb.DataType_DT_INT32, TensorShape: tensorShape(shape)}
	if len(vals) == 1 {
		p.IntVal = vals
		return p
	}
	p.TensorContent = make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(p.TensorContent[4*i:], uint32(v))
	}
	return p
}

func tensorShape(shape []int) *shapepb.TensorShapeProto {
	s := &shapepb.TensorShapeProto{}
	for _, d := range shape {
		s.Dim = append(s.Dim, &shapepb.TensorShapeProto_Dim{Size: int64(d)})
	}
	return s
}

// askNumSkills reads the model's num_skills from the server's signature_def
// (GetModelMetadata): input_x of "predict" is [B, T, 2·num_skills]. It is
// also the benchmark's check that the target serves the model at all.
func askNumSkills(ctx context.Context, conn *grpc.ClientConn, modelName string, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req := &apis.GetModelMetadataRequest{ModelSpec: &apis.ModelSpec{Name: modelName}, MetadataField: []string{"signature_def"}}
	var resp apis.GetModelMetadataResponse
	if err := conn.Invoke(ctx, "/tensorflow.serving.PredictionService/GetModelMetadata", req, &resp); err != nil {
		return 0, fmt.Errorf("--target %s: reading model %q's signatures (GetModelMetadata): %w", conn.Target(), modelName, err)
	}
	var defs apis.SignatureDefMap
	if err := resp.GetMetadata()["signature_def"].UnmarshalTo(&defs); err != nil {
		return 0, fmt.Errorf("--target %s: model %q's signature_def: %w", conn.Target(), modelName, err)
	}
	dims := defs.GetSignatureDef()[originSignature].GetInputs()["input_x"].GetTensorShape().GetDim()
	if len(dims) != 3 || dims[2].GetSize() < 2 || dims[2].GetSize()%2 != 0 {
		return 0, fmt.Errorf("--target %s: model %q has no %s signature with input_x [B, T, 2·num_skills] (input_x dims %v); the benchmark sends the origin's requests",
			conn.Target(), modelName, originSignature, dims)
	}
	return int(dims[2].GetSize()) / 2, nil
}
