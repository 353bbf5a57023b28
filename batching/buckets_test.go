package batching

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestLengthBucketBounds(t *testing.T) {
	for _, g := range []float64{1.01, 1.05, 1.3, 2} {
		lb := lengthBuckets{growth: g}
		lb.index(100_000)
		prevHi := 0
		for i := range lb.hi {
			lo, hi := lb.bounds(i)
			if lo != prevHi+1 || hi < lo {
				t.Fatalf("growth %v: bucket %d is [%d,%d] after %d", g, i, lo, hi, prevHi)
			}
			if float64(hi)/float64(lo) > g {
				t.Fatalf("growth %v: bucket %d [%d,%d] exceeds the ratio", g, i, lo, hi)
			}
			if float64(lo)*(g-1) < 1 && lo != hi {
				t.Fatalf("growth %v: short lengths must be exact buckets, got [%d,%d]", g, lo, hi)
			}
			prevHi = hi
		}
		for _, n := range []int{1, 2, 19, 20, 21, 1000, 99_999} {
			lo, hi := lb.bounds(lb.index(n))
			if n < lo || n > hi {
				t.Errorf("growth %v: length %d filed in [%d,%d]", g, n, lo, hi)
			}
		}
		t.Logf("growth %v: %d buckets up to length 100000", g, len(lb.hi))
	}
}

// Items of very different lengths, in random order, must never share a batch
// beyond the growth ratio, whichever limit flushes them.
func TestBucketsBoundPadding(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lengths := make([]int, 0, 3000)
	for n := 1; n <= 1500; n++ {
		lengths = append(lengths, n, 1+rng.IntN(3000))
	}
	rng.Shuffle(len(lengths), func(i, j int) { lengths[i], lengths[j] = lengths[j], lengths[i] })

	for _, g := range []float64{1.05, 1.2, 2} {
		cfg := Config{NumSkills: 4, MaxBatchSize: 16, MaxDelay: time.Second, MaxPaddedSteps: 16 * 256, BucketGrowth: g}
		a := mustAssembler(t, cfg)
		var batches []*Batch
		for i, n := range lengths {
			batches = append(batches, mustAdd(t, a, seq(i, n, 4), t0)...)
		}
		batches = append(batches, a.Drain()...)
		seen := 0
		for _, b := range batches {
			shortest := b.Steps
			for _, l := range b.SeqLen {
				shortest = min(shortest, int(l))
			}
			if r := float64(b.Steps) / float64(shortest); r > g {
				t.Fatalf("growth %v: batch mixes lengths %d..%d (ratio %.3f)", g, shortest, b.Steps, r)
			}
			if r := float64(b.ComputedSteps()) / float64(b.RealSteps()); r > g {
				t.Fatalf("growth %v: computed/real = %.3f", g, r)
			}
			if b.Size() > 1 && b.ComputedSteps() > cfg.MaxPaddedSteps {
				t.Fatalf("growth %v: batch of %d has B·T %d over the budget", g, b.Size(), b.ComputedSteps())
			}
			seen += b.Size()
			b.Release()
		}
		if seen != len(lengths) {
			t.Fatalf("growth %v: %d items out, %d in", g, seen, len(lengths))
		}
		s := a.Stats()
		t.Logf("growth %v: %d batches, computed/real %.4f", g, s.Batches, float64(s.ComputedSteps)/float64(s.RealSteps))
	}
}
