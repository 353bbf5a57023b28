package batching

import (
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func testConfig() Config {
	return Config{NumSkills: 5, MaxBatchSize: 4, MaxDelay: 10 * time.Millisecond, MaxPaddedSteps: 1000}
}

// seq builds an item of length n whose skills and flags are derived from the
// seed, so different items have different contents and mix-ups show.
func seq(ref, n, numSkills int) Item {
	it := Item{Skills: make([]int32, n), Correct: make([]int8, n), Ref: ref}
	for t := range n {
		it.Skills[t] = int32((ref*7 + t*3) % numSkills)
		it.Correct[t] = int8((ref + t) % 2)
	}
	return it
}

// checkContract compares every element of the batch's tensors with the
// predict_ids layout, computed independently of padToLongest.
func checkContract(t *testing.T, b *Batch, numSkills int) {
	t.Helper()
	nb := len(b.Items)
	steps := 0
	for _, it := range b.Items {
		steps = max(steps, len(it.Skills))
	}
	if b.Steps != steps {
		t.Fatalf("Steps = %d, want longest length %d", b.Steps, steps)
	}
	if len(b.SkillID) != nb*steps || len(b.Correct) != nb*steps || len(b.TargetID) != nb*steps || len(b.SeqLen) != nb {
		t.Fatalf("tensor lengths %d/%d/%d/%d, want %d/%d/%d/%d",
			len(b.SkillID), len(b.Correct), len(b.TargetID), len(b.SeqLen), nb*steps, nb*steps, nb*steps, nb)
	}
	for r, it := range b.Items {
		n := len(it.Skills)
		if int(b.SeqLen[r]) != n {
			t.Errorf("SeqLen[%d] = %d, want %d", r, b.SeqLen[r], n)
		}
		for s := range steps {
			var skill, correct, target int32 // zero at padding
			if s < n {
				skill, correct = it.Skills[s], int32(it.Correct[s])
				if skill < 0 || int(skill) >= numSkills {
					t.Fatalf("test item %d step %d has skill %d outside [0, %d)", r, s, skill, numSkills)
				}
			}
			if s < n-1 {
				target = it.Skills[s+1]
			}
			i := r*steps + s
			if b.SkillID[i] != skill || b.Correct[i] != correct || b.TargetID[i] != target {
				t.Fatalf("[%d,%d]: skill_id %d correct %d target_id %d, want %d %d %d",
					r, s, b.SkillID[i], b.Correct[i], b.TargetID[i], skill, correct, target)
			}
		}
	}
}

func mustAssembler(t testing.TB, cfg Config) *Assembler {
	t.Helper()
	a, err := NewAssembler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustAdd(t testing.TB, a *Assembler, it Item, now time.Time) []*Batch {
	t.Helper()
	out, err := a.Add(it, now)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// describe summarises batches as "reason:[refs]" for readable failures.
func describe(bs []*Batch) []string {
	var out []string
	for _, b := range bs {
		refs := make([]any, len(b.Items))
		for i, it := range b.Items {
			refs[i] = it.Ref
		}
		out = append(out, fmt.Sprintf("%s:%v", b.Reason, refs))
	}
	return out
}
