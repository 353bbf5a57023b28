package batching

import (
	"errors"
	"testing"
	"time"
)

func TestPadToLongestContract(t *testing.T) {
	const numSkills = 5
	tests := []struct {
		name    string
		lengths []int
	}{
		{"one step", []int{1}},
		{"single", []int{4}},
		{"equal lengths", []int{3, 3, 3}},
		{"ragged", []int{1, 5, 2, 4}},
		{"longest first", []int{6, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			items := make([]Item, len(tc.lengths))
			for i, n := range tc.lengths {
				items[i] = seq(i, n, numSkills)
			}
			b, err := PadToLongest(numSkills, items)
			if err != nil {
				t.Fatal(err)
			}
			checkContract(t, b, numSkills)
			if got, want := b.ComputedSteps(), len(items)*b.Steps; got != want {
				t.Errorf("ComputedSteps = %d, want %d", got, want)
			}
			sum := 0
			for _, n := range tc.lengths {
				sum += n
			}
			if b.RealSteps() != sum {
				t.Errorf("RealSteps = %d, want %d", b.RealSteps(), sum)
			}
		})
	}
}

func TestPadToLongestRejectsWhatItCannotPad(t *testing.T) {
	for _, items := range [][]Item{nil, {{Skills: []int32{7}, Correct: []int8{1}}}} {
		if _, err := PadToLongest(5, items); !errors.Is(err, ErrInvalidItem) {
			t.Errorf("PadToLongest(%v) = %v, want ErrInvalidItem", items, err)
		}
	}
}

// A released buffer comes back with whatever the consumer left in it; the
// next, smaller batch must not show any of it at its padded steps.
func TestPaddingAfterReleaseHasNoStaleData(t *testing.T) {
	cfg := Config{NumSkills: 3, MaxBatchSize: 8, MaxDelay: time.Second, MaxPaddedSteps: 1000, BucketGrowth: 2}
	a := mustAssembler(t, cfg)

	// Lengths 7..14 share one bucket at growth 2, and both batches fall in the
	// same buffer size classes, so the second reuses the first's memory.
	long := []Item{seq(1, 14, 3), seq(2, 9, 3), seq(3, 11, 3)}
	for _, it := range long {
		mustAdd(t, a, it, t0)
	}
	first := a.Drain()
	if len(first) != 1 {
		t.Fatalf("want 1 batch, got %v", describe(first))
	}
	checkContract(t, first[0], cfg.NumSkills)
	tensors := func(b *Batch) [][]int32 { return [][]int32{b.SkillID, b.Correct, b.TargetID, b.SeqLen} }
	var firstPtrs []*int32
	// Simulate a consumer that scribbled over the tensors before releasing.
	for _, tensor := range tensors(first[0]) {
		firstPtrs = append(firstPtrs, &tensor[0])
		for i := range tensor {
			tensor[i] = 7
		}
	}
	first[0].Release()
	first[0].Release() // second release is a no-op, not a double put

	short := []Item{seq(4, 12, 3), seq(5, 7, 3), seq(6, 8, 3)}
	for _, it := range short {
		mustAdd(t, a, it, t0)
	}
	second := a.Drain()
	if len(second) != 1 {
		t.Fatalf("want 1 batch, got %v", describe(second))
	}
	reused := map[*int32]bool{}
	for _, tensor := range tensors(second[0]) {
		reused[&tensor[0]] = true
	}
	for i, p := range firstPtrs {
		if !reused[p] {
			t.Fatalf("buffer %d of the first batch was not reused; the stale-data check would prove nothing", i)
		}
	}
	checkContract(t, second[0], cfg.NumSkills)
	second[0].Release()
}

func TestFreeListClasses(t *testing.T) {
	var f freeList[int32]
	a := f.get(5)
	if len(a) != 5 || cap(a) != 8 {
		t.Fatalf("get(5): len %d cap %d, want 5, 8", len(a), cap(a))
	}
	f.put(a)
	if b := f.get(8); &b[0] != &a[0] {
		t.Error("get(8) did not reuse the cap-8 buffer")
	}
	f.put(a)
	if b := f.get(9); cap(b) != 16 {
		t.Errorf("get(9) cap %d, want a fresh 16", cap(b))
	}
	for range keepPerClass + 3 {
		f.put(make([]int32, 0, 8))
	}
	if n := len(f.classes[3]); n != keepPerClass {
		t.Errorf("class holds %d buffers, want at most %d", n, keepPerClass)
	}
}

// A batch's item list comes from the pool and goes back on Release, emptied so
// that the pool keeps no student's sequence alive; PadToLongest's list is the
// caller's and is left alone.
func TestReleaseRecyclesTheItemList(t *testing.T) {
	a := mustAssembler(t, testConfig())
	for ref := range 3 {
		mustAdd(t, a, seq(ref, 4, 5), t0)
	}
	first := a.Drain()
	if len(first) != 1 || len(first[0].Items) != 3 {
		t.Fatalf("want 1 batch of 3, got %v", describe(first))
	}
	held := first[0].Items
	first[0].Release()
	for i, it := range held {
		if it.Skills != nil || it.Correct != nil || it.Ref != nil {
			t.Fatalf("released item list still holds item %d: %+v", i, it)
		}
	}
	mustAdd(t, a, seq(7, 4, 5), t0)
	second := a.Drain()
	if len(second) != 1 || &second[0].Items[0] != &held[0] || second[0].Items[0].Ref != 7 {
		t.Fatalf("the next batch did not reuse the released item list: %v", describe(second))
	}

	mine := []Item{seq(1, 3, 5), seq(2, 2, 5)}
	b, err := PadToLongest(5, mine)
	if err != nil {
		t.Fatal(err)
	}
	b.Release()
	if mine[0].Skills == nil || mine[1].Ref != 2 {
		t.Fatalf("Release cleared the caller's items: %+v", mine)
	}
}
