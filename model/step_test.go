package model

import (
	"bufio"
	"context"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const testSplit = "../data/assistments/builder_test.csv"

// readDKT3ForTest parses the DKT 3-line CSV (n / skills / correct) on its own,
// so the model tests do not depend on the io packages above them.
func readDKT3ForTest(t testing.TB, path string) []referenceStudent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	var lines []string
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			lines = append(lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	ints := func(line string) []int32 {
		var out []int32
		for _, field := range strings.Split(strings.Trim(line, ","), ",") {
			v, err := strconv.Atoi(strings.TrimSpace(field))
			if err != nil {
				t.Fatalf("%s: %q: %v", path, line, err)
			}
			out = append(out, int32(v))
		}
		return out
	}
	var students []referenceStudent
	for i := 0; i+2 < len(lines); i += 3 {
		s := referenceStudent{Index: len(students), Skills: ints(lines[i+1]), Correct: ints(lines[i+2])}
		s.SeqLen = len(s.Skills)
		students = append(students, s)
	}
	return students
}

// pickStudents returns the first n students, the shortest and the longest
// (thousands of steps), as referenceStudents.
func pickStudents(all []referenceStudent, first, shortest, longest int) []referenceStudent {
	byLength := slices.Clone(all)
	slices.SortStableFunc(byLength, func(a, b referenceStudent) int { return a.SeqLen - b.SeqLen })
	picked := slices.Clone(all[:first])
	picked = append(picked, byLength[:shortest]...)
	picked = append(picked, byLength[len(byLength)-longest:]...)
	return picked
}

// trajectories runs Predict and returns pred_all[0:n, :] of every student.
func trajectories(t *testing.T, ctx context.Context, m *Model, students []referenceStudent) [][]float32 {
	t.Helper()
	out := make([][]float32, len(students))
	// The long students get a batch each, so no batch pads short ones to thousands of steps.
	for start := 0; start < len(students); {
		end := start + 1
		if students[start].SeqLen < 1000 {
			for end < len(students) && students[end].SeqLen < 1000 {
				end++
			}
		}
		batch := students[start:end]
		in := padForTest(batch, m.NumSkills)
		total := 0
		for _, s := range batch {
			total += s.SeqLen
		}
		steps := make([]float32, total*m.NumSkills)
		if err := m.Predict(ctx, in, Outputs{Last: make([]float32, len(batch)*m.NumSkills), Steps: steps}); err != nil {
			t.Fatal(err)
		}
		for i, s := range batch {
			out[start+i], steps = steps[:s.SeqLen*m.NumSkills], steps[s.SeqLen*m.NumSkills:]
		}
		start = end
	}
	return out
}

func TestStepReproducesPredictTrajectoryOnRealStudents(t *testing.T) {
	students := pickStudents(readDKT3ForTest(t, testSplit), 12, 3, 2)
	m, err := Load(Config{Path: bundledModel, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.HasStep() || m.StateSize() != 2*200 {
		t.Fatalf("HasStep = %v, StateSize = %d; the bundled model has one layer of 200 units", m.HasStep(), m.StateSize())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	want := trajectories(t, ctx, m, students)

	// Every student steps in one batch, one row each, with zero state (no
	// history). A student whose history ends leaves the batch and the rows after
	// it move up, carrying their state, as a live batch changes from run to run.
	s, size := m.NumSkills, m.StateSize()
	active := make([]int, len(students)) // row → student
	for i := range active {
		active[i] = i
	}
	state := make([]float32, len(students)*size)
	mastery := make([]float32, len(students)*s)
	skill := make([]int32, len(students))
	correct := make([]int32, len(students))
	worst, compared := 0.0, 0
	for step := 0; len(active) > 0; step++ {
		rows := len(active)
		for row, i := range active {
			skill[row], correct[row] = students[i].Skills[step], students[i].Correct[step]
		}
		in := StepInputs{SkillID: skill[:rows], Correct: correct[:rows], State: state[:rows*size]}
		if err := m.Step(ctx, in, StepOutputs{State: state[:rows*size], Mastery: mastery[:rows*s]}); err != nil {
			t.Fatal(err)
		}
		kept := 0
		for row, i := range active {
			got, exp := mastery[row*s:(row+1)*s], want[i][step*s:(step+1)*s]
			for k := range got {
				d := math.Abs(float64(got[k] - exp[k]))
				worst = max(worst, d)
				if d > 1e-5 {
					t.Fatalf("student %d (length %d) step %d skill %d: Step gives %v, Predict %v (|diff| %g)",
						students[i].Index, students[i].SeqLen, step, k, got[k], exp[k], d)
				}
			}
			compared++
			if step+1 < students[i].SeqLen {
				copy(state[kept*size:(kept+1)*size], state[row*size:(row+1)*size])
				active[kept] = i
				kept++
			}
		}
		active = active[:kept]
	}
	total := 0
	for _, st := range students {
		total += st.SeqLen
	}
	if compared != total {
		t.Fatalf("compared %d steps, the students have %d", compared, total)
	}
	t.Logf("%d students (longest %d steps), %d steps: Step matches Predict's trajectory, worst |diff| %.2g",
		len(students), students[len(students)-1].SeqLen, compared, worst)
}

func TestStepRejectsMalformedInputs(t *testing.T) {
	m, err := Load(Config{Path: bundledModel, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, size := m.NumSkills, m.StateSize()
	good := func() (StepInputs, StepOutputs) {
		return StepInputs{SkillID: []int32{3, 5}, Correct: []int32{0, 1}, State: make([]float32, 2*size)},
			StepOutputs{State: make([]float32, 2*size), Mastery: make([]float32, 2*s)}
	}
	cases := []struct {
		name, want string
		edit       func(*StepInputs, *StepOutputs)
	}{
		{"empty batch", "empty", func(in *StepInputs, out *StepOutputs) {
			*in, *out = StepInputs{}, StepOutputs{}
		}},
		{"correct shorter than skill_id", "Correct has 1 values", func(in *StepInputs, _ *StepOutputs) { in.Correct = in.Correct[:1] }},
		{"skill out of range", "row 1: skill_id 124 is outside [0, 124)", func(in *StepInputs, _ *StepOutputs) { in.SkillID[1] = 124 }},
		{"negative skill", "row 0: skill_id -1", func(in *StepInputs, _ *StepOutputs) { in.SkillID[0] = -1 }},
		{"correct not 0/1", "row 0: correct is 2", func(in *StepInputs, _ *StepOutputs) { in.Correct[0] = 2 }},
		{"state of the wrong size", "StepInputs.State has 399 values", func(in *StepInputs, _ *StepOutputs) { in.State = in.State[:399] }},
		{"no room for mastery", "StepOutputs.Mastery has room for 124", func(_ *StepInputs, out *StepOutputs) { out.Mastery = out.Mastery[:s] }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, out := good()
			c.edit(&in, &out)
			err := m.Step(context.Background(), in, out)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Step = %v, want an error containing %q", err, c.want)
			}
		})
	}
	in, out := good()
	if err := m.Step(context.Background(), in, out); err != nil {
		t.Fatalf("the well-formed batch fails: %v", err)
	}
}

func TestStepOnAModelWithoutStepSaysHowToUpgrade(t *testing.T) {
	m, err := Load(Config{Path: modelWithout(t, StepSignature), Sessions: 1})
	if err != nil {
		t.Fatalf("a model without step must still load for predict: %v", err)
	}
	defer m.Close()
	if m.HasStep() || m.StateSize() != 0 {
		t.Fatalf("HasStep = %v, StateSize = %d; want false, 0", m.HasStep(), m.StateSize())
	}
	err = m.Step(context.Background(), StepInputs{SkillID: []int32{1}, Correct: []int32{1}},
		StepOutputs{Mastery: make([]float32, m.NumSkills)})
	if err == nil || !strings.Contains(err.Error(), "python -m dkt.upgrade --model DIR") {
		t.Fatalf("Step = %v, want an error naming dkt.upgrade", err)
	}
	t.Log(err)
}

// BenchmarkStep runs one Step of B rows; allocs/op counts the tensors and the
// graft bindings' bookkeeping, which the reused buffers cannot avoid.
func BenchmarkStep(b *testing.B) {
	m, err := Load(Config{Path: bundledModel, Sessions: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	for _, rows := range []int{1, 32, 256} {
		b.Run("rows="+strconv.Itoa(rows), func(b *testing.B) {
			in := StepInputs{SkillID: make([]int32, rows), Correct: make([]int32, rows), State: make([]float32, rows*m.StateSize())}
			for i := range rows {
				in.SkillID[i], in.Correct[i] = int32(i%m.NumSkills), int32(i%2)
			}
			out := StepOutputs{State: in.State, Mastery: make([]float32, rows*m.NumSkills)}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Step(ctx, in, out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows), "ns/row")
		})
	}
}

// Step's tensors are freed by finalizers, so Step collects garbage itself once
// it has dropped collectEveryBytes of them (see droppedTensors). 256-row runs
// drop about 0.9 MiB of tensors each and allocate under 1 KB of Go heap, so
// without that, 200 runs would give the collector no reason to run.
func TestStepCollectsTheTensorsItDrops(t *testing.T) {
	m, err := Load(Config{Path: bundledModel, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const rows, runs = 256, 200
	in := StepInputs{SkillID: make([]int32, rows), Correct: make([]int32, rows), State: make([]float32, rows*m.StateSize())}
	out := StepOutputs{State: in.State, Mastery: make([]float32, rows*m.NumSkills)}
	perRun := int64(rows * 4 * (2 + 2*m.StateSize() + m.NumSkills))
	want := uint32(runs * perRun / collectEveryBytes)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		if err := m.Step(context.Background(), in, out); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.NumForcedGC - before.NumForcedGC; got < want {
		t.Fatalf("%d forced collections over %d runs dropping %d MiB of tensors; want at least %d", got, runs, runs*perRun>>20, want)
	}
}
