package modelserver

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	tensorpb "github.com/wamuir/graft/tensorflow/core/framework/tensor_go_proto"
	shapepb "github.com/wamuir/graft/tensorflow/core/framework/tensor_shape_go_proto"
	typespb "github.com/wamuir/graft/tensorflow/core/framework/types_go_proto"
)

// tensor is a decoded request input: its shape and its values, float32 or
// int32 by the input's dtype.
type tensor struct {
	shape  []int
	floats []float32
	ints   []int32
}

// elements is the number of values a shape holds.
func elements(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// decodeTensor reads input name of the wanted dtype as TensorFlow does
// (tensor.proto): raw little-endian tensor_content when present, else the
// typed repeated field, where fewer values than the shape holds repeat the
// last one and none means zeros. maxElements bounds what a small message may
// make the server allocate (a shape of 10⁹ with one value). Every problem
// names the input and says what was expected.
func decodeTensor(name string, p *tensorpb.TensorProto, want typespb.DataType, maxElements int) (tensor, error) {
	if p.GetDtype() != want {
		return tensor{}, fmt.Errorf("input %s has dtype %s; the signature takes %s", name, dtypeName(p.GetDtype()), dtypeName(want))
	}
	shape, err := decodeShape(name, p.GetTensorShape(), maxElements)
	if err != nil {
		return tensor{}, err
	}
	n := elements(shape)
	t := tensor{shape: shape}
	if content := p.GetTensorContent(); len(content) > 0 {
		if len(content) != 4*n {
			return tensor{}, fmt.Errorf("input %s: tensor_content has %d bytes; shape %s of %s needs %d", name, len(content), shapeText(shape), dtypeName(want), 4*n)
		}
		if want == typespb.DataType_DT_FLOAT {
			t.floats = make([]float32, n)
			for i := range t.floats {
				t.floats[i] = math.Float32frombits(binary.LittleEndian.Uint32(content[4*i:]))
			}
		} else {
			t.ints = make([]int32, n)
			for i := range t.ints {
				t.ints[i] = int32(binary.LittleEndian.Uint32(content[4*i:]))
			}
		}
		return t, nil
	}
	if want == typespb.DataType_DT_FLOAT {
		t.floats, err = expand(name, "float_val", p.GetFloatVal(), n)
	} else {
		t.ints, err = expand(name, "int_val", p.GetIntVal(), n)
	}
	return t, err
}

// expand fills n values from a repeated field as TensorFlow's
// Tensor::FromProto does.
func expand[T float32 | int32](name, field string, vals []T, n int) ([]T, error) {
	if len(vals) > n {
		return nil, fmt.Errorf("input %s: %s has %d values; its shape holds %d", name, field, len(vals), n)
	}
	out := make([]T, n)
	copy(out, vals)
	if len(vals) > 0 {
		for i := len(vals); i < n; i++ {
			out[i] = vals[len(vals)-1]
		}
	}
	return out, nil
}

func decodeShape(name string, s *shapepb.TensorShapeProto, maxElements int) ([]int, error) {
	if s.GetUnknownRank() {
		return nil, fmt.Errorf("input %s has an unknown rank; give its tensor_shape", name)
	}
	shape := make([]int, len(s.GetDim()))
	n := 1
	for i, d := range s.GetDim() {
		if d.GetSize() < 0 {
			return nil, fmt.Errorf("input %s: dimension %d has size %d; sizes must not be negative", name, i, d.GetSize())
		}
		if d.GetSize() > int64(maxElements) || (d.GetSize() > 0 && n > maxElements/int(d.GetSize())) {
			return nil, fmt.Errorf("input %s: its shape holds more than %d values, the most a request may (--max-request-bytes)", name, maxElements)
		}
		shape[i] = int(d.GetSize())
		n *= shape[i]
	}
	return shape, nil
}

// shapeText writes a shape as Python does: [2, 4, 248].
func shapeText(shape []int) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.Itoa(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// floatTensor is pred_all as TF Serving answers it: float_val with the
// shape (the origin's client reads outputs["pred_all"].float_val).
func floatTensor(shape []int, values []float32) *tensorpb.TensorProto {
	dims := make([]*shapepb.TensorShapeProto_Dim, len(shape))
	for i, d := range shape {
		dims[i] = &shapepb.TensorShapeProto_Dim{Size: int64(d)}
	}
	return &tensorpb.TensorProto{Dtype: typespb.DataType_DT_FLOAT, TensorShape: &shapepb.TensorShapeProto{Dim: dims}, FloatVal: values}
}

// dtypeName is a dtype as TensorFlow's Python API spells it.
func dtypeName(d typespb.DataType) string {
	switch d {
	case typespb.DataType_DT_FLOAT:
		return "float32"
	case typespb.DataType_DT_INT32:
		return "int32"
	case typespb.DataType_DT_INT64:
		return "int64"
	case typespb.DataType_DT_DOUBLE:
		return "float64"
	}
	return d.String()
}
