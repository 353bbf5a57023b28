package batching

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestScheduleChunksRunsEveryStepOnceInOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct{ rows, blockRows, chunk int }{
		{1, 1, 1}, {5, 2, 3}, {40, 8, 16}, {300, 64, 64}, {7, 64, 128},
	} {
		seqLen := make([]int32, tc.rows)
		for i := range seqLen {
			seqLen[i] = int32(1 + rng.IntN(400))
		}
		seqLen[tc.rows/2] = 2000 // one long chain
		next := make([]int, tc.rows)
		rounds, computed, real := 0, 0, 0
		err := ScheduleChunks(seqLen, tc.blockRows, tc.chunk, func(b Block) error {
			if rounds == 0 && b.Rows[0] != tc.rows/2 {
				t.Errorf("%+v: the first block starts with row %d, want the longest history (row %d)", tc, b.Rows[0], tc.rows/2)
			}
			rounds++
			if len(b.Rows) == 0 || len(b.Rows) > tc.blockRows || len(b.Rows)*b.Steps > tc.blockRows*tc.chunk {
				t.Fatalf("%+v: block of %d rows × %d steps", tc, len(b.Rows), b.Steps)
			}
			if slices.Max(b.Lens) != b.Steps {
				t.Fatalf("%+v: block padded to %d, its longest chunk is %d", tc, b.Steps, slices.Max(b.Lens))
			}
			seen := map[int]bool{}
			for i, row := range b.Rows {
				if seen[row] {
					t.Fatalf("%+v: row %d twice in one block", tc, row)
				}
				seen[row] = true
				if b.Starts[i] != next[row] || b.Lens[i] < 1 {
					t.Fatalf("%+v: row %d chunk at %d (+%d), want it to start at %d", tc, row, b.Starts[i], b.Lens[i], next[row])
				}
				next[row] += b.Lens[i]
				real += b.Lens[i]
			}
			computed += len(b.Rows) * b.Steps
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for row, n := range seqLen {
			if next[row] != int(n) {
				t.Fatalf("%+v: row %d scheduled %d of %d steps", tc, row, next[row], n)
			}
		}
		if got := chunkedSteps(seqLen, tc.blockRows, tc.chunk); got != computed {
			t.Fatalf("chunkedSteps = %d, the blocks computed %d", got, computed)
		}
		t.Logf("%+v: %d rounds, padding efficiency %.3f", tc, rounds, float64(real)/float64(computed))
	}
}

// With chunks on, a long history shares its batch with the others of its
// length bucket instead of riding alone (the budget bounds a block, not
// B·T), and the blocks stay nearly free of padding: on the real test split
// and on ten copies of it, as a bigger job or a busy server sees them.
func TestChunkPolicyOnTheTestSplit(t *testing.T) {
	split := readDKT3(t, testSplit)
	for _, copies := range []int{1, 10} {
		var items []Item
		for range copies {
			items = append(items, split...)
		}
		cfg := Config{NumSkills: realNumSkills, MaxBatchSize: 64, MaxDelay: 1, MaxPaddedSteps: 32768, ChunkSteps: 64}
		a, err := NewAssembler(cfg)
		if err != nil {
			t.Fatal(err)
		}
		batches := assembleAll(t, a, items)
		real, computed, rowSteps, longestRows := 0, 0, 0, 0
		for _, b := range batches {
			if b.ChunkSteps != cfg.ChunkSteps || b.BlockRows != cfg.MaxBatchSize {
				t.Fatalf("batch stamped with chunk %d × rows %d, want the policy's", b.ChunkSteps, b.BlockRows)
			}
			if slices.Contains(b.SeqLen, 8214) {
				longestRows = max(longestRows, len(b.Items))
			}
			real += b.RealSteps()
			computed += b.ComputedSteps()
			_ = ScheduleChunks(b.SeqLen, b.BlockRows, b.ChunkSteps, func(bl Block) error {
				for _, n := range bl.Lens {
					rowSteps += n * len(bl.Rows) // each real step weighted by the rows of its block
				}
				return nil
			})
		}
		stats := a.Stats()
		if int(stats.RealSteps) != real || int(stats.ComputedSteps) != computed {
			t.Fatalf("stats count %d real / %d computed steps, the batches %d / %d", stats.RealSteps, stats.ComputedSteps, real, computed)
		}
		eff := float64(real) / float64(computed)
		t.Logf("×%d: %d batches, padding efficiency %.4f, mean rows of the block an interaction runs in %.1f; the 8,214-step students in a batch of %d",
			copies, len(batches), eff, float64(rowSteps)/float64(real), longestRows)
		if eff < 0.95 {
			t.Errorf("×%d: padding efficiency %.4f, want at least 0.95", copies, eff)
		}
		if longestRows != copies {
			t.Errorf("×%d: the %d students of 8,214 steps ride in batches of at most %d", copies, copies, longestRows)
		}
	}
}
