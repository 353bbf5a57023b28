package model

import (
	"context"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Every student runs in one block per round, its history cut into chunks of
// size steps, the state carried in Go; a row whose history ends leaves the
// block. Mastery, next_prob and pred_all must equal Predict's trajectory.
func TestRunChunkReproducesPredictOnRealStudents(t *testing.T) {
	students := pickStudents(readDKT3ForTest(t, testSplit), 10, 2, 2)
	m, err := Load(Config{Path: bundledModel, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if !m.HasChunk() || m.ChunkStateSize() != 2*200 {
		t.Fatalf("HasChunk = %v, ChunkStateSize = %d; the bundled model has one layer of 200 units", m.HasChunk(), m.ChunkStateSize())
	}
	if longest := students[len(students)-1].SeqLen; longest != 8214 {
		t.Fatalf("the longest student has %d steps, want the split's 8,214", longest)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	want := trajectories(t, ctx, m, students)
	s, size := m.NumSkills, m.ChunkStateSize()
	for _, c := range []int{7, 64, 256} {
		t.Run("chunk "+strconv.Itoa(c), func(t *testing.T) {
			b := len(students)
			state := make([]float32, b*size)
			in := ChunkInputs{Steps: c}
			out := ChunkOutputs{}
			worst := 0.0
			check := func(student, step, k int, got, exp float32, what string) {
				d := math.Abs(float64(got - exp))
				worst = max(worst, d)
				if d > 1e-5 {
					t.Fatalf("student %d (length %d) step %d skill %d: chunk %s %v, Predict %v", students[student].Index,
						students[student].SeqLen, step, k, what, got, exp)
				}
			}
			for start := 0; ; start += c {
				var active []int
				for i, st := range students {
					if st.SeqLen > start {
						active = append(active, i)
					}
				}
				if len(active) == 0 {
					break
				}
				rows := len(active)
				in.Size = rows
				in.SkillID, in.Correct, in.NextSkill = make([]int32, rows*c), make([]int32, rows*c), make([]int32, rows*c)
				in.SeqLen, in.State = make([]int32, rows), make([]float32, rows*size)
				for row, i := range active {
					st := students[i]
					n := min(c, st.SeqLen-start)
					in.SeqLen[row] = int32(n)
					copy(in.SkillID[row*c:], st.Skills[start:start+n])
					copy(in.Correct[row*c:], st.Correct[start:start+n])
					copy(in.NextSkill[row*c:], st.Skills[start+1:min(st.SeqLen, start+n+1)])
					copy(in.State[row*size:(row+1)*size], state[i*size:(i+1)*size])
				}
				out = ChunkOutputs{State: in.State, Mastery: make([]float32, rows*s), NextProb: make([]float32, rows*c), PredAll: make([]float32, rows*c*s)}
				if err := m.RunChunk(ctx, in, out); err != nil {
					t.Fatal(err)
				}
				for row, i := range active {
					st := students[i]
					n := int(in.SeqLen[row])
					copy(state[i*size:(i+1)*size], out.State[row*size:(row+1)*size])
					for step := range n {
						at := start + step
						for k := range s {
							check(i, at, k, out.PredAll[(row*c+step)*s+k], want[i][at*s+k], "pred_all")
						}
						if at+1 < st.SeqLen {
							next := int(st.Skills[at+1])
							check(i, at, next, out.NextProb[row*c+step], want[i][at*s+next], "next_prob")
						}
					}
					if start+n == st.SeqLen {
						for k := range s {
							check(i, st.SeqLen-1, k, out.Mastery[row*s+k], want[i][(st.SeqLen-1)*s+k], "mastery")
						}
					}
				}
			}
			t.Logf("%d students (longest %d steps) in chunks of %d: worst |diff| %.2g", len(students), students[len(students)-1].SeqLen, c, worst)
		})
	}
}

// Fetching only the state (what a row in the middle of its history needs)
// gives the same state as fetching everything.
func TestRunChunkFetchesOnlyWhatIsAsked(t *testing.T) {
	m, err := Load(Config{Path: bundledModel, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, size := m.NumSkills, m.ChunkStateSize()
	in := ChunkInputs{Size: 2, Steps: 3, SkillID: []int32{5, 9, 5, 42, 0, 0}, Correct: []int32{1, 0, 1, 0, 0, 0},
		NextSkill: []int32{9, 5, 0, 0, 0, 0}, SeqLen: []int32{3, 1}, State: make([]float32, 2*size)}
	all := ChunkOutputs{State: make([]float32, 2*size), Mastery: make([]float32, 2*s), NextProb: make([]float32, 6), PredAll: make([]float32, 6*s)}
	only := ChunkOutputs{State: make([]float32, 2*size)}
	for _, out := range []ChunkOutputs{all, only} {
		if err := m.RunChunk(context.Background(), in, out); err != nil {
			t.Fatal(err)
		}
	}
	assertClose(t, 0, "state", only.State, all.State)
	// The second row's padded steps must not have moved its state: one real step from zero state is
	// predict's first step, whose h also gives mastery.
	step := StepOutputs{State: make([]float32, size), Mastery: make([]float32, s)}
	if err := m.Step(context.Background(), StepInputs{SkillID: []int32{42}, Correct: []int32{0}, State: make([]float32, size)}, step); err != nil {
		t.Fatal(err)
	}
	assertClose(t, 1, "state after one real step", all.State[size:], step.State)
	assertClose(t, 1, "mastery after one real step", all.Mastery[s:], step.Mastery)
}

func TestRunChunkRejectsMalformedInputs(t *testing.T) {
	m, err := Load(Config{Path: bundledModel, Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, size := m.NumSkills, m.ChunkStateSize()
	good := func() (ChunkInputs, ChunkOutputs) {
		return ChunkInputs{Size: 2, Steps: 2, SkillID: []int32{3, 5, 1, 0}, Correct: []int32{0, 1, 1, 0}, NextSkill: []int32{5, 0, 0, 0},
				SeqLen: []int32{2, 1}, State: make([]float32, 2*size)},
			ChunkOutputs{State: make([]float32, 2*size), Mastery: make([]float32, 2*s)}
	}
	cases := []struct {
		name, want string
		edit       func(*ChunkInputs, *ChunkOutputs)
	}{
		{"empty block", "empty", func(in *ChunkInputs, out *ChunkOutputs) { *in, *out = ChunkInputs{}, ChunkOutputs{} }},
		{"skill out of range", "skill_id[1, 0] = 124 is outside [0, 124)", func(in *ChunkInputs, _ *ChunkOutputs) { in.SkillID[2] = 124 }},
		{"next skill out of range", "next_skill[0, 1] = -1", func(in *ChunkInputs, _ *ChunkOutputs) { in.NextSkill[1] = -1 }},
		{"correct not 0/1", "correct[0, 0] = 2", func(in *ChunkInputs, _ *ChunkOutputs) { in.Correct[0] = 2 }},
		{"zero length", "sequence_len[1] = 0 is outside [1, 2]", func(in *ChunkInputs, _ *ChunkOutputs) { in.SeqLen[1] = 0 }},
		{"state of the wrong size", "ChunkInputs.State has room for 399", func(in *ChunkInputs, _ *ChunkOutputs) { in.State = in.State[:399] }},
		{"no room for pred_all", "ChunkOutputs.PredAll has room for 5", func(_ *ChunkInputs, out *ChunkOutputs) { out.PredAll = make([]float32, 5) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in, out := good()
			c.edit(&in, &out)
			err := m.RunChunk(context.Background(), in, out)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("RunChunk = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

// A model without the chunk signature (a converted checkpoint, an older
// export) says so, and how to add it.
func TestRunChunkWithoutTheSignature(t *testing.T) {
	m, err := Load(Config{Path: modelWithout(t, ChunkSignature), Sessions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.HasChunk() || m.ChunkStateSize() != 0 {
		t.Fatalf("HasChunk = %v, ChunkStateSize = %d without the signature", m.HasChunk(), m.ChunkStateSize())
	}
	err = m.RunChunk(context.Background(), ChunkInputs{}, ChunkOutputs{})
	if err == nil || !strings.Contains(err.Error(), "dkt.upgrade") {
		t.Fatalf("RunChunk = %v, want an error that points at dkt.upgrade", err)
	}
}
