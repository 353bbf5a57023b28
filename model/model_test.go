package model

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	corepb "github.com/wamuir/graft/tensorflow/core/protobuf/for_core_protos_go_proto"
	"google.golang.org/protobuf/proto"
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
func pythonReference(t testing.TB, picks string) []referenceStudent {
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
// numSkills only guards the reference data: an id outside the model is a
// broken fixture, not a case under test.
func padForTest(students []referenceStudent, numSkills int) Inputs {
	in := Inputs{Size: len(students)}
	for _, s := range students {
		in.Steps = max(in.Steps, len(s.Skills))
	}
	in.SkillID = make([]int32, in.Size*in.Steps)
	in.Correct = make([]int32, in.Size*in.Steps)
	in.TargetID = make([]int32, in.Size*in.Steps)
	for b, s := range students {
		in.SeqLen = append(in.SeqLen, int32(len(s.Skills)))
		for t := range s.Skills {
			if s.Skills[t] < 0 || int(s.Skills[t]) >= numSkills {
				panic(fmt.Sprintf("reference student %d has skill %d outside [0, %d)", s.Index, s.Skills[t], numSkills))
			}
			in.SkillID[b*in.Steps+t] = s.Skills[t]
			in.Correct[b*in.Steps+t] = s.Correct[t]
			if t+1 < len(s.Skills) {
				in.TargetID[b*in.Steps+t] = s.Skills[t+1]
			}
		}
	}
	return in
}

// Both signatures of the bundled model, on real students, against Python
// TensorFlow running the origin signature one student at a time, and against
// each other.
func TestPredictMatchesPythonTensorFlowOnRealStudents(t *testing.T) {
	ref := pythonReference(t, "first:12,shortest:3,longest:2")
	// Short students share one padded batch; the two longest (thousands of steps)
	// share another, so padding is exercised at both ends.
	batches := [][]referenceStudent{ref[:len(ref)-2], ref[len(ref)-2:]}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	type scored struct{ last, steps, next []float32 }
	bySignature := map[string][]scored{}
	for _, tc := range []struct {
		signature, want string
		ids             bool
	}{
		{"", IDsSignature, true}, // the default: the compact signature when the model has it
		{OriginSignature, OriginSignature, false},
	} {
		t.Run(tc.want, func(t *testing.T) {
			m, err := Load(Config{Path: bundledModel, Sessions: 2, Signature: tc.signature})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.NumSkills != 124 || m.Signature != tc.want || m.IDs != tc.ids {
				t.Fatalf("num_skills %d, signature %q (ids %v); want 124, %q (ids %v)", m.NumSkills, m.Signature, m.IDs, tc.want, tc.ids)
			}
			checked := 0
			for _, batch := range batches {
				in := padForTest(batch, m.NumSkills)
				total := 0
				for _, n := range in.SeqLen {
					total += int(n)
				}
				got := scored{make([]float32, in.Size*m.NumSkills), make([]float32, total*m.NumSkills), make([]float32, total)}
				if err := m.Predict(ctx, in, Outputs{Last: got.last, Steps: got.steps, Next: got.next}); err != nil {
					t.Fatal(err)
				}
				bySignature[tc.want] = append(bySignature[tc.want], got)
				offset := 0
				for b, s := range batch {
					assertClose(t, s.Index, "mastery", got.last[b*m.NumSkills:(b+1)*m.NumSkills], s.Mastery)
					for step := 0; step+1 < s.SeqLen; step++ {
						fromSteps := got.steps[(offset+step)*m.NumSkills+int(s.Skills[step+1])]
						for _, v := range []float32{fromSteps, got.next[offset+step]} {
							if d := math.Abs(float64(v - s.NextPred[step])); d > 1e-5 {
								t.Fatalf("student %d step %d: next-step prediction %v, python %v (|diff| %g)", s.Index, step, v, s.NextPred[step], d)
							}
						}
					}
					offset += s.SeqLen
					checked++
				}
			}
			t.Logf("%s: %d real students (lengths %d..%d) match Python TF within 1e-5",
				m.Signature, checked, ref[len(ref)-3].SeqLen, ref[len(ref)-1].SeqLen)
		})
	}
	ids, origin := bySignature[IDsSignature], bySignature[OriginSignature]
	if len(ids) != len(batches) || len(origin) != len(batches) {
		t.Fatal("a signature did not score every batch")
	}
	for i := range batches {
		// The whole trajectory, every skill at every real step, not only what
		// Python was compared on.
		assertClose(t, i, "ids vs origin trajectory", ids[i].steps, origin[i].steps)
		assertClose(t, i, "ids vs origin next-step", ids[i].next, origin[i].next)
	}
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
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"origin input renamed away", Config{Signature: OriginSignature, Names: Names{InputX: "no_such_input"}}, "neither"},
		{"origin input missing", Config{Signature: OriginSignature, Names: Names{TargetID: "no_such_input"}}, `no tensor "no_such_input"`},
		{"ids input missing", Config{Names: Names{Correct: "no_such_input"}}, `no tensor "no_such_input"`},
		{"ids output missing", Config{Signature: IDsSignature, Names: Names{PredAll: "no_such_output"}}, `no tensor "no_such_output"`},
		{"missing signature", Config{Signature: "serving_default"}, `no signature "serving_default"`},
		{"step is not a predict signature", Config{Signature: StepSignature}, `takes "state_c_0"`},
		{"ids input renamed away", Config{Signature: StepSignature, Names: Names{SkillID: "no_such_input"}}, "neither"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Path, cfg.Sessions = bundledModel, 1
			m, err := Load(cfg)
			if err == nil {
				m.Close()
				t.Fatalf("Load(%+v) was accepted", tc.cfg)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load(%+v) = %v, want an error about %q", tc.cfg, err, tc.want)
			}
		})
	}
}

// modelWithout copies the bundled model's graph without the given signatures
// (the weights are linked, not copied): a model exported before they existed.
func modelWithout(t *testing.T, signatures ...string) string {
	t.Helper()
	src, _, _, err := ResolveDir(bundledModel)
	if err != nil {
		t.Fatal(err)
	}
	src, _ = filepath.Abs(src)
	raw, err := os.ReadFile(filepath.Join(src, "saved_model.pb"))
	if err != nil {
		t.Fatal(err)
	}
	var sm corepb.SavedModel
	if err := proto.Unmarshal(raw, &sm); err != nil {
		t.Fatal(err)
	}
	for _, mg := range sm.GetMetaGraphs() {
		for _, key := range signatures {
			delete(mg.GetSignatureDef(), key)
		}
	}
	out, err := proto.Marshal(&sm)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "dkt", "1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "saved_model.pb"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(src, "variables"), filepath.Join(dir, "variables")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A model exported with only the origin signature is still scored, through
// the one-hot the model builds, with the results of predict_ids.
func TestLoadFallsBackToTheOriginSignature(t *testing.T) {
	old, err := Load(Config{Path: modelWithout(t, IDsSignature), Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if old.Signature != OriginSignature || old.IDs {
		t.Fatalf("without predict_ids: signature %q (ids %v), want %q", old.Signature, old.IDs, OriginSignature)
	}
	current, err := Load(Config{Path: bundledModel, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer current.Close()
	// Two students, lengths 3 and 1; the short one's padding holds ids that must not count.
	in := Inputs{Size: 2, Steps: 3, SeqLen: []int32{3, 1},
		SkillID: []int32{5, 9, 5, 42, 7, 7}, Correct: []int32{1, 0, 1, 0, 1, 1}, TargetID: []int32{9, 5, 0, 0, 0, 0}}
	var got [2][]float32
	for i, m := range []*Model{old, current} {
		got[i] = make([]float32, 4*m.NumSkills)
		if err := m.Predict(context.Background(), in, Outputs{Last: make([]float32, 2*m.NumSkills), Steps: got[i]}); err != nil {
			t.Fatal(err)
		}
	}
	assertClose(t, 0, "origin vs ids trajectory", got[0], got[1])
}

func TestIDsContract(t *testing.T) {
	tensor := func(key, dtype string, shape ...int64) TensorInfo {
		return TensorInfo{Key: key, Name: key + ":0", DType: dtype, Shape: shape}
	}
	good := func() SignatureInfo {
		return SignatureInfo{Key: "ids",
			Inputs: []TensorInfo{tensor("correct", "int32", -1, -1), tensor("sequence_len", "int32", -1),
				tensor("skill_id", "int32", -1, -1)},
			Outputs: []TensorInfo{tensor("pred_all", "float32", -1, -1, 7)}}
	}
	for _, tc := range []struct {
		name   string
		change func(*SignatureInfo)
		want   string // "" = accepted with num_skills 7
	}{
		{"good", func(*SignatureInfo) {}, ""},
		{"an input it would not feed", func(s *SignatureInfo) { s.Inputs = append(s.Inputs, tensor("keep_prob", "float32")) }, `takes "keep_prob"`},
		{"int64 ids", func(s *SignatureInfo) { s.Inputs[2].DType = "int64" }, `"skill_id" is int64`},
		{"flat correct", func(s *SignatureInfo) { s.Inputs[0].Shape = []int64{-1} }, `"correct" has shape [-1]`},
		{"no sequence_len", func(s *SignatureInfo) { s.Inputs = s.Inputs[:1] }, `no tensor "sequence_len"`},
		{"unknown depth", func(s *SignatureInfo) { s.Outputs[0].Shape[2] = -1 }, "cannot derive num_skills"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sig := good()
			tc.change(&sig)
			n := Config{}
			n.defaults()
			numSkills, err := checkIDsContract("dir", sig, n.Names)
			switch {
			case tc.want == "" && (err != nil || numSkills != 7):
				t.Fatalf("checkIDsContract = %d, %v; want 7, nil", numSkills, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("checkIDsContract = %d, %v; want an error about %q", numSkills, err, tc.want)
			}
		})
	}
}

// The one-hot is written straight into TensorFlow's buffer in one Read; the
// same bytes must come out when a caller reads in small or unaligned pieces.
func TestOneHotReaderMatchesTheContract(t *testing.T) {
	const numSkills = 3
	in := Inputs{Size: 2, Steps: 3, SeqLen: []int32{3, 1},
		SkillID: []int32{0, 2, 1, 2, 1, 1}, // row 1's padded steps hold ids that must not show
		Correct: []int32{1, 0, 1, 0, 1, 0}, TargetID: make([]int32, 6)}
	depth := 2 * numSkills
	want := make([]float32, in.Size*in.Steps*depth)
	for b := range in.Size {
		for step := range int(in.SeqLen[b]) {
			i := b*in.Steps + step
			want[i*depth+int(in.SkillID[i])+numSkills*int(in.Correct[i])] = 1
		}
	}
	for _, tc := range []struct {
		name string
		wrap func(io.Reader) io.Reader
	}{
		{"whole buffer", func(r io.Reader) io.Reader { return r }},
		{"one byte at a time", iotest.OneByteReader},
		{"half of what is asked", iotest.HalfReader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r oneHotReader
			r.reset(in, numSkills)
			got := make([]float32, len(want))
			for i := range got {
				got[i] = 9 // stands for TensorFlow's uninitialised memory
			}
			if _, err := io.ReadFull(tc.wrap(&r), asBytes(got)); err != nil {
				t.Fatal(err)
			}
			if n, err := r.Read(make([]byte, 4)); n != 0 || err != io.EOF {
				t.Fatalf("after the tensor: Read = %d, %v; want 0, EOF", n, err)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("input_x[%d, %d, %d] = %v, want %v", i/depth/in.Steps, i/depth%in.Steps, i%depth, got[i], want[i])
				}
			}
		})
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
	valid := func() Inputs {
		return Inputs{Size: 1, Steps: 2, SkillID: []int32{3, 4}, Correct: []int32{1, 0}, TargetID: []int32{4, 0}, SeqLen: []int32{2}}
	}
	for _, tc := range []struct {
		name   string
		change func(*Inputs)
		want   string
	}{
		{"short skill_id", func(in *Inputs) { in.SkillID = in.SkillID[:1] }, "skill_id has 1 values, want 1×2"},
		{"skill out of range", func(in *Inputs) { in.SkillID[1] = 124 }, "skill_id[0, 1] = 124 is outside [0, 124)"},
		{"negative skill", func(in *Inputs) { in.SkillID[0] = -1 }, "skill_id[0, 0] = -1"},
		{"correct not 0/1", func(in *Inputs) { in.Correct[0] = 2 }, "correct[0, 0] = 2 is outside [0, 2)"},
		{"target out of range", func(in *Inputs) { in.TargetID[0] = 500 }, "target_id[0, 0] = 500"},
		{"sequence longer than the batch", func(in *Inputs) { in.SeqLen[0] = 5 }, "sequence_len[0] = 5 is outside [1, 2]"},
		{"empty batch", func(in *Inputs) { *in = Inputs{} }, "batch 0×0 is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := valid()
			tc.change(&in)
			err := m.Predict(context.Background(), in, Outputs{Last: make([]float32, in.Size*m.NumSkills)})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Predict = %v, want an error about %q", err, tc.want)
			}
		})
	}
	// The valid batch itself runs, so the rejections above are about the change.
	in := valid()
	if err := m.Predict(context.Background(), in, Outputs{Last: make([]float32, m.NumSkills)}); err != nil {
		t.Fatalf("the valid batch: %v", err)
	}
}

// BenchmarkPredict runs one real batch (the first 32 students of the test
// split, padded to the longest) through each signature, so that -benchmem
// shows what a batch allocates: only its tensors, which TensorFlow owns, and
// the small Go values graft wraps them and the run in.
func BenchmarkPredict(b *testing.B) {
	ref := pythonReference(b, "first:32")
	in := padForTest(ref, 124)
	real := 0
	for _, n := range in.SeqLen {
		real += int(n)
	}
	for _, signature := range []string{IDsSignature, OriginSignature} {
		b.Run(signature, func(b *testing.B) {
			m, err := Load(Config{Path: bundledModel, Sessions: 1, Signature: signature})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			out := Outputs{Last: make([]float32, in.Size*m.NumSkills), Next: make([]float32, real)}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Predict(ctx, in, out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(real)*float64(b.N)/b.Elapsed().Seconds(), "interactions/s")
		})
	}
}

// Predict's tensors are C memory freed by finalizers, so Predict counts what
// it drops and collects garbage itself (droppedTensors): a batch of 32×512
// steps drops 8 MiB of pred_all and allocates a few hundred bytes of Go heap,
// which alone would give the collector no reason to run.
func TestPredictCollectsTheTensorsItDrops(t *testing.T) {
	m, err := Load(Config{Path: bundledModel, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const size, steps, runs = 32, 512, 24
	in := Inputs{Size: size, Steps: steps, SkillID: make([]int32, size*steps), Correct: make([]int32, size*steps),
		TargetID: make([]int32, size*steps), SeqLen: make([]int32, size)}
	for b := range size {
		in.SeqLen[b] = steps
	}
	out := Outputs{Last: make([]float32, size*m.NumSkills)}
	want := uint32(runs * m.all[0].tensorBytes(in, m.NumSkills) / collectEveryBytes)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		if err := m.Predict(context.Background(), in, out); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.NumForcedGC - before.NumForcedGC; want < 2 || got < want {
		t.Fatalf("%d forced collections over %d runs; want at least %d (and the test to drop enough for 2)", got, runs, want)
	}
}
