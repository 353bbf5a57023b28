package batching

import (
	"slices"
	"testing"
	"time"
)

func TestAssemblerFlushReasons(t *testing.T) {
	type step struct {
		ref, n int
		at     time.Duration // arrival, relative to t0
		want   []string      // batches Add returns, as describe() prints them
	}
	tests := []struct {
		name   string
		cfg    Config
		steps  []step
		expire time.Duration // Expired(t0+expire) after the steps, if > 0
		want   []string      // batches from Expired (if expire > 0), then Drain
	}{
		{
			name: "size",
			cfg:  Config{NumSkills: 5, MaxBatchSize: 3, MaxDelay: time.Second, MaxPaddedSteps: 1000},
			steps: []step{
				{ref: 1, n: 4},
				{ref: 2, n: 4},
				{ref: 9, n: 7}, // another bucket: does not count towards the first
				{ref: 3, n: 4, want: []string{"size:[1 2 3]"}},
			},
			want: []string{"drain:[9]"},
		},
		{
			name: "bucket budget reached: no next item can fit",
			cfg:  Config{NumSkills: 5, MaxBatchSize: 10, MaxDelay: time.Second, MaxPaddedSteps: 10},
			steps: []step{
				{ref: 1, n: 4},
				{ref: 2, n: 4, want: []string{"bucket:[1 2]"}}, // a third would make 3·4 > 10
				{ref: 3, n: 4},
			},
			want: []string{"drain:[3]"},
		},
		{
			name: "bucket budget exceeded by a longer item",
			cfg:  Config{NumSkills: 5, MaxBatchSize: 10, MaxDelay: time.Second, MaxPaddedSteps: 11, BucketGrowth: 2},
			steps: []step{
				{ref: 1, n: 3},
				{ref: 2, n: 6, want: []string{"bucket:[1]", "bucket:[2]"}}, // 2·6 > 11, and 6 alone leaves no room
			},
		},
		{
			name: "single sequence over the budget is a batch of one",
			cfg:  Config{NumSkills: 5, MaxBatchSize: 10, MaxDelay: time.Second, MaxPaddedSteps: 10},
			steps: []step{
				{ref: 1, n: 25, want: []string{"bucket:[1]"}},
				{ref: 2, n: 25, want: []string{"bucket:[2]"}},
			},
		},
		{
			name: "delay flushes only buckets past their deadline, oldest first",
			cfg:  Config{NumSkills: 5, MaxBatchSize: 10, MaxDelay: 10 * time.Millisecond, MaxPaddedSteps: 1000},
			steps: []step{
				{ref: 1, n: 5, at: 0},
				{ref: 2, n: 2, at: 1 * time.Millisecond},
				{ref: 3, n: 5, at: 9 * time.Millisecond}, // joins ref 1: the deadline stays ref 1's
				{ref: 4, n: 9, at: 5 * time.Millisecond},
			},
			expire: 11 * time.Millisecond,
			want:   []string{"delay:[1 3]", "delay:[2]", "drain:[4]"},
		},
		{
			name: "drain flushes in arrival order of each bucket's oldest item",
			cfg:  Config{NumSkills: 5, MaxBatchSize: 10, MaxDelay: time.Second, MaxPaddedSteps: 1000},
			steps: []step{
				{ref: 1, n: 30},
				{ref: 2, n: 1},
				{ref: 3, n: 30},
				{ref: 4, n: 7},
			},
			want: []string{"drain:[1 3]", "drain:[2]", "drain:[4]"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := mustAssembler(t, tc.cfg)
			var all []*Batch
			for _, s := range tc.steps {
				got := mustAdd(t, a, seq(s.ref, s.n, tc.cfg.NumSkills), t0.Add(s.at))
				if !slices.Equal(describe(got), s.want) {
					t.Fatalf("Add(ref %d) = %v, want %v", s.ref, describe(got), s.want)
				}
				all = append(all, got...)
			}
			var got []*Batch
			if tc.expire > 0 {
				if none := a.Expired(t0.Add(tc.expire - time.Millisecond - 1)); len(none) != 0 {
					// The earliest deadline in these cases is tc.expire-1ms.
					t.Fatalf("Expired before any deadline = %v", describe(none))
				}
				got = append(got, a.Expired(t0.Add(tc.expire))...)
			}
			got = append(got, a.Drain()...)
			if !slices.Equal(describe(got), tc.want) {
				t.Fatalf("flushes = %v, want %v", describe(got), tc.want)
			}
			all = append(all, got...)

			var want Stats
			for _, b := range all {
				checkContract(t, b, tc.cfg.NumSkills)
				want.Flushes[b.Reason]++
				want.Batches++
				want.Items += uint64(b.Size())
				want.RealSteps += uint64(b.RealSteps())
				want.ComputedSteps += uint64(b.ComputedSteps())
				b.Release()
			}
			if s := a.Stats(); s != want {
				t.Errorf("Stats = %+v, want %+v", s, want)
			}
			if len(a.Drain()) != 0 || a.Pending() != 0 {
				t.Error("something left after Drain")
			}
		})
	}
}

func TestAssemblerNextDeadline(t *testing.T) {
	cfg := Config{NumSkills: 5, MaxBatchSize: 10, MaxDelay: 10 * time.Millisecond, MaxPaddedSteps: 1000}
	a := mustAssembler(t, cfg)
	if _, ok := a.NextDeadline(); ok {
		t.Fatal("deadline with nothing waiting")
	}
	mustAdd(t, a, seq(1, 3, 5), t0.Add(4*time.Millisecond))
	mustAdd(t, a, seq(2, 8, 5), t0.Add(2*time.Millisecond))  // clock may be passed out of order
	mustAdd(t, a, seq(3, 3, 5), t0.Add(20*time.Millisecond)) // joins bucket of ref 1
	if d, ok := a.NextDeadline(); !ok || !d.Equal(t0.Add(12*time.Millisecond)) {
		t.Fatalf("NextDeadline = %v %v, want t0+12ms", d, ok)
	}
	got := a.Expired(t0.Add(12 * time.Millisecond))
	if !slices.Equal(describe(got), []string{"delay:[2]"}) {
		t.Fatalf("Expired = %v", describe(got))
	}
	if d, ok := a.NextDeadline(); !ok || !d.Equal(t0.Add(14*time.Millisecond)) {
		t.Fatalf("NextDeadline = %v %v, want t0+14ms", d, ok)
	}
	got = a.Expired(t0.Add(time.Hour))
	if !slices.Equal(describe(got), []string{"delay:[1 3]"}) {
		t.Fatalf("Expired = %v", describe(got))
	}
	if _, ok := a.NextDeadline(); ok {
		t.Fatal("deadline left after everything expired")
	}
}
