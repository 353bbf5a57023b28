package main

import (
	"context"
	"testing"

	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/model"
)

// A session configured for a GPU (visible device, memory fraction, growth)
// still loads and scores on a CPU-only host through soft placement, with the
// same results as a plain CPU session: the GPU code path is exercised here even
// though no GPU is.
func TestGPUPlacedSessionScoresOnCPUThroughSoftPlacement(t *testing.T) {
	device := gpu.Device{Index: 1, Ordinal: 0, UUID: "GPU-test", Name: "test GPU"}
	placed := gpu.Placement{Device: &device, MemoryFraction: 0.4, AllowGrowth: true}
	raw, err := placed.SessionConfig(gpu.SessionConfig{IntraOpThreads: 1}).ConfigProto()
	if err != nil {
		t.Fatal(err)
	}
	gpuModel, err := model.Load(model.Config{Path: "../../models/dkt", Sessions: 1, SessionConfig: raw})
	if err != nil {
		t.Fatalf("a GPU-placed session must fall back to the CPU: %v", err)
	}
	defer gpuModel.Close()
	cpuModel, err := model.Load(model.Config{Path: "../../models/dkt", Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer cpuModel.Close()

	// Two students, lengths 3 and 1, padded to 3 steps per the model contract.
	s := gpuModel.NumSkills
	in := model.Inputs{Size: 2, Steps: 3, SeqLen: []int32{3, 1},
		SkillID: []int32{5, 9, 5, 42, 0, 0}, Correct: []int32{1, 0, 1, 0, 0, 0}, TargetID: []int32{9, 5, 0, 0, 0, 0}}
	onGPUConfig, onCPU := make([]float32, 2*s), make([]float32, 2*s)
	if err := gpuModel.Predict(context.Background(), in, model.Outputs{Last: onGPUConfig}); err != nil {
		t.Fatal(err)
	}
	if err := cpuModel.Predict(context.Background(), in, model.Outputs{Last: onCPU}); err != nil {
		t.Fatal(err)
	}
	for k := range onCPU {
		if onGPUConfig[k] != onCPU[k] || onCPU[k] <= 0 || onCPU[k] >= 1 {
			t.Fatalf("mastery[%d]: GPU-placed %v, CPU %v", k, onGPUConfig[k], onCPU[k])
		}
	}
}
