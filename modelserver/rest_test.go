package modelserver

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	typespb "github.com/wamuir/graft/tensorflow/core/framework/types_go_proto"
)

func TestJSONTensorsReadAsTensorFlowShapesThem(t *testing.T) {
	x, err := jsonTensor("input_x", json.RawMessage(`[[[0, 1.5], [2, 3]], [[4, 5], [6, 7]]]`), typespb.DataType_DT_FLOAT, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := x.GetTensorShape().GetDim(); len(got) != 3 || got[0].GetSize() != 2 || got[1].GetSize() != 2 || got[2].GetSize() != 2 {
		t.Fatalf("shape %v, want [2 2 2]", got)
	}
	if v := x.GetFloatVal(); len(v) != 8 || v[1] != 1.5 || v[7] != 7 {
		t.Fatalf("values %v", v)
	}
	scalar, err := jsonTensor("max_steps", json.RawMessage(`5`), typespb.DataType_DT_INT32, 100)
	if err != nil || len(scalar.GetTensorShape().GetDim()) != 0 || scalar.GetIntVal()[0] != 5 {
		t.Fatalf("scalar %v, err %v", scalar, err)
	}
	for raw, want := range map[string]string{
		`[[1, 2], [3]]`:         "not rectangular",
		`[[1, 2], 3]`:           "not rectangular",
		`[1.5]`:                 "1.5 is not an int32",
		`[{"a": 1}]`:            "where a number belongs",
		`[1, 2, 3, 4, 5, 6, 7]`: "more than 5 values",
	} {
		if _, err := jsonTensor("target_id", json.RawMessage(raw), typespb.DataType_DT_INT32, 5); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "target_id") {
			t.Errorf("%s: err %v, want one naming target_id and %q", raw, err, want)
		}
	}
}

func TestRESTOutputsAreNestedAsTheShape(t *testing.T) {
	var b bytes.Buffer
	if err := writeNested(&b, floatTensor([]int{1, 2, 3}, []float32{0, 0.5, 1, 2, 3, 4})); err != nil {
		t.Fatal(err)
	}
	var got struct{ Outputs [][][]float64 }
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err, b.String())
	}
	if len(got.Outputs) != 1 || len(got.Outputs[0]) != 2 || got.Outputs[0][1][2] != 4 || got.Outputs[0][0][1] != 0.5 {
		t.Fatalf("outputs %v", got.Outputs)
	}
}
