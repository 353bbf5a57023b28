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
			if len(b.Rows) == 0 || len(b.Rows) > tc.blockRows || b.Steps > tc.chunk {
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

// With chunks on, long histories share one bucket: on the real test split
// they no longer ride in batches of a few rows, and the blocks stay nearly
// free of padding.
func TestChunkPolicyOnTheTestSplit(t *testing.T) {
	items := readDKT3(t, testSplit)
	cfg := Config{NumSkills: realNumSkills, MaxBatchSize: 64, MaxDelay: 1, MaxPaddedSteps: 32768, ChunkSteps: 64}
	a, err := NewAssembler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	batches := assembleAll(t, a, items)
	real, computed, rowSteps := 0, 0, 0
	longestAlone := true
	for _, b := range batches {
		if b.ChunkSteps != cfg.ChunkSteps || b.BlockRows != cfg.MaxBatchSize {
			t.Fatalf("batch stamped with chunk %d × rows %d, want the policy's", b.ChunkSteps, b.BlockRows)
		}
		if slices.Contains(b.SeqLen, 8214) && len(b.Items) > 1 {
			longestAlone = false
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
	rows := float64(rowSteps) / float64(real)
	// The same mean without chunks: each batch is one run of all its rows.
	cfg.ChunkSteps = 0
	plain, err := NewAssembler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	plainRowSteps := 0
	for _, b := range assembleAll(t, plain, items) {
		plainRowSteps += b.RealSteps() * len(b.Items)
	}
	plainRows := float64(plainRowSteps) / float64(real)
	t.Logf("%d batches: padding efficiency %.4f, mean rows of the block an interaction runs in %.1f (without chunks %.1f)",
		len(batches), eff, rows, plainRows)
	if rows < 2*plainRows {
		t.Errorf("an interaction runs in a block of %.1f rows on average, without chunks %.1f: want at least twice as many", rows, plainRows)
	}
	if eff < 0.95 {
		t.Errorf("padding efficiency %.4f, want at least 0.95", eff)
	}
	if longestAlone {
		t.Errorf("the 8,214-step student still forms a batch of one")
	}
}
