package gpu

import (
	"strings"
	"testing"

	corepb "github.com/wamuir/graft/tensorflow/core/protobuf/for_core_protos_go_proto"
	"google.golang.org/protobuf/proto"
)

// The bytes are decoded with TensorFlow's own generated ConfigProto, so a wrong
// field number or wire type fails here rather than silently inside TF.
func TestConfigProtoDecodesWithTensorFlowSchema(t *testing.T) {
	tests := []struct {
		name string
		cfg  SessionConfig
		want *corepb.ConfigProto
	}{
		{"cpu defaults", SessionConfig{}, &corepb.ConfigProto{AllowSoftPlacement: true}},
		{"cpu threads", SessionConfig{IntraOpThreads: 2, InterOpThreads: 1},
			&corepb.ConfigProto{IntraOpParallelismThreads: 2, InterOpParallelismThreads: 1, AllowSoftPlacement: true}},
		{"one gpu with fraction", SessionConfig{VisibleDevices: "1", MemoryFraction: 0.45},
			&corepb.ConfigProto{AllowSoftPlacement: true, GpuOptions: &corepb.GPUOptions{
				VisibleDeviceList: "1", PerProcessGpuMemoryFraction: 0.45}}},
		{"growth, two gpus, strict placement", SessionConfig{VisibleDevices: "0,2", AllowGrowth: true, DisableSoftPlacement: true},
			&corepb.ConfigProto{GpuOptions: &corepb.GPUOptions{VisibleDeviceList: "0,2", AllowGrowth: true}}},
		{"cpu worker on a gpu host", SessionConfig{HideGPUs: true, IntraOpThreads: 4},
			&corepb.ConfigProto{IntraOpParallelismThreads: 4, AllowSoftPlacement: true, DeviceCount: map[string]int32{"GPU": 0}}},
		{"full fraction", SessionConfig{MemoryFraction: 1},
			&corepb.ConfigProto{AllowSoftPlacement: true, GpuOptions: &corepb.GPUOptions{PerProcessGpuMemoryFraction: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, err := tt.cfg.ConfigProto()
			if err != nil {
				t.Fatal(err)
			}
			got := new(corepb.ConfigProto)
			if err := proto.Unmarshal(raw, got); err != nil {
				t.Fatalf("TensorFlow's ConfigProto cannot decode our bytes: %v", err)
			}
			if !proto.Equal(got, tt.want) {
				t.Fatalf("decoded %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSessionConfigRejectsEveryProblem(t *testing.T) {
	err := SessionConfig{MemoryFraction: 1.5, IntraOpThreads: -1, InterOpThreads: -2}.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"memory fraction 1.5", "intra-op threads -1", "inter-op threads -2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := (SessionConfig{MemoryFraction: -0.1}).ConfigProto(); err == nil {
		t.Error("ConfigProto accepted a negative memory fraction")
	}
}
