package model

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

const bundledModel = "../models/dkt"

type referenceStudent struct {
	Index    int       `json:"index"`
	SeqLen   int       `json:"seq_len"`
	Skills   []int32   `json:"skills"`
	Correct  []int32   `json:"correct"`
	Mastery  []float32 `json:"mastery"`
	NextPred []float32 `json:"next_pred"`
}

// pythonReference runs the Python TensorFlow reference (each student alone,
// unpadded) on real ASSISTments test students.
func pythonReference(t *testing.T, picks string) []referenceStudent {
	t.Helper()
	python, err := filepath.Abs("../.venv/bin/python")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(python); err != nil {
		t.Fatalf("%s missing: run `make setup` first", python)
	}
	dir, _, _, err := ResolveDir(bundledModel)
	if err != nil {
		t.Fatal(err)
	}
	dir, _ = filepath.Abs(dir)
	out := filepath.Join(t.TempDir(), "ref.json")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-m", "dkt.reference", "--model", dir,
		"--input", "../data/assistments/builder_test.csv", "--students", picks, "--out", out)
	cmd.Dir = "../python"
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("python reference failed: %v\n%s", err, msg)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Students []referenceStudent `json:"students"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	return ref.Students
}

// padForTest lays students out per the model contract, written independently
// of the batching package so that a shared misunderstanding cannot hide.
func padForTest(students []referenceStudent, numSkills int) Inputs {
	in := Inputs{Size: len(students)}
	for _, s := range students {
		in.Steps = max(in.Steps, len(s.Skills))
	}
	in.InputX = make([]float32, in.Size*in.Steps*2*numSkills)
	in.TargetID = make([]int32, in.Size*in.Steps)
	for b, s := range students {
		in.SeqLen = append(in.SeqLen, int32(len(s.Skills)))
		for t := range s.Skills {
			in.InputX[(b*in.Steps+t)*2*numSkills+int(s.Skills[t])+numSkills*int(s.Correct[t])] = 1
			if t+1 < len(s.Skills) {
				in.TargetID[b*in.Steps+t] = s.Skills[t+1]
			}
		}
	}
	return in
}

func TestPredictMatchesPythonTensorFlowOnRealStudents(t *testing.T) {
	ref := pythonReference(t, "first:12,shortest:3,longest:2")
	m, err := Load(Config{Path: bundledModel, Sessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.NumSkills != 124 {
		t.Fatalf("num_skills = %d, want 124", m.NumSkills)
	}
	// Short students share one padded batch; the two longest (thousands of steps)
	// share another, so padding is exercised at both ends.
	batches := [][]referenceStudent{ref[:len(ref)-2], ref[len(ref)-2:]}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	checked := 0
	for _, batch := range batches {
		in := padForTest(batch, m.NumSkills)
		total := 0
		for _, n := range in.SeqLen {
			total += int(n)
		}
		last := make([]float32, in.Size*m.NumSkills)
		steps := make([]float32, total*m.NumSkills)
		next := make([]float32, total)
		if err := m.Predict(ctx, in, Outputs{Last: last, Steps: steps, Next: next}); err != nil {
			t.Fatal(err)
		}
		offset := 0
		for b, s := range batch {
			assertClose(t, s.Index, "mastery", last[b*m.NumSkills:(b+1)*m.NumSkills], s.Mastery)
			for step := 0; step+1 < s.SeqLen; step++ {
				fromSteps := steps[(offset+step)*m.NumSkills+int(s.Skills[step+1])]
				for _, got := range []float32{fromSteps, next[offset+step]} {
					if d := math.Abs(float64(got - s.NextPred[step])); d > 1e-5 {
						t.Fatalf("student %d step %d: next-step prediction %v, python %v (|diff| %g)", s.Index, step, got, s.NextPred[step], d)
					}
				}
			}
			offset += s.SeqLen
			checked++
		}
	}
	t.Logf("%d real students (lengths %d..%d) match Python TF within 1e-5", checked, ref[len(ref)-3].SeqLen, ref[len(ref)-1].SeqLen)
}

func assertClose(t *testing.T, student int, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("student %d %s: %d values, python has %d", student, what, len(got), len(want))
	}
	for k := range got {
		if d := math.Abs(float64(got[k] - want[k])); d > 1e-5 {
			t.Fatalf("student %d %s[%d] = %v, python %v (|diff| %g)", student, what, k, got[k], want[k], d)
		}
	}
}

func TestLoadRejectsWhatIsNotASavedModel(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(Config{Path: dir, Sessions: 1})
	if !errors.Is(err, ErrNotSavedModel) {
		t.Fatalf("Load(%s) = %v, want ErrNotSavedModel", dir, err)
	}
	os.WriteFile(filepath.Join(dir, "saved_model.pb"), []byte("not a protobuf at all"), 0o644)
	if _, err := Inspect(dir); !errors.Is(err, ErrNotSavedModel) {
		t.Fatalf("Inspect of garbage = %v, want ErrNotSavedModel", err)
	}
}

func TestLoadRejectsSignatureOutsideTheContract(t *testing.T) {
	_, err := Load(Config{Path: bundledModel, Sessions: 1, Names: Names{InputX: "no_such_input"}})
	if err == nil {
		t.Fatal("a missing input was accepted")
	}
	t.Log(err)
	if _, err := Load(Config{Path: bundledModel, Sessions: 1, Signature: "serving_default"}); err == nil {
		t.Fatal("a missing signature was accepted")
	}
}

func TestResolveDirPicksHighestNumericVersion(t *testing.T) {
	base := t.TempDir()
	for _, v := range []string{"2", "10", "9", "notes"} {
		os.MkdirAll(filepath.Join(base, v), 0o755)
		if v != "notes" {
			os.WriteFile(filepath.Join(base, v, "saved_model.pb"), nil, 0o644)
		}
	}
	dir, _, version, err := ResolveDir(base)
	if err != nil {
		t.Fatal(err)
	}
	if version != "10" || dir != filepath.Join(base, "10") {
		t.Fatalf("ResolveDir = %s (version %s), want version 10", dir, version)
	}
}

func TestPredictRejectsMalformedInputs(t *testing.T) {
	m, err := Load(Config{Path: bundledModel, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	in := Inputs{Size: 1, Steps: 2, InputX: make([]float32, 3), TargetID: make([]int32, 2), SeqLen: []int32{5}}
	err = m.Predict(context.Background(), in, Outputs{Last: make([]float32, m.NumSkills)})
	if err == nil {
		t.Fatal("malformed inputs accepted")
	}
	t.Log(err)
}
