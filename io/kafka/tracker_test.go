package kafka

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// next returns the committable offset of topic "t" partition p, or -1.
func next(tr *offsetTracker, p int32) int64 {
	for _, pt := range tr.committable(nil) {
		if pt.part.tp == (topicPartition{"t", p}) {
			return pt.offset
		}
	}
	return -1
}

func TestTrackerContiguousPrefix(t *testing.T) {
	errBoom := errors.New("sink failed")
	tests := []struct {
		name    string
		offsets []int64 // tracked in this order
		acks    []int   // indexes into offsets, in ack order
		fail    map[int]bool
		want    []int64 // committable after each ack
	}{
		{
			name:    "in order",
			offsets: []int64{0, 1, 2},
			acks:    []int{0, 1, 2},
			want:    []int64{1, 2, 3},
		},
		{
			name:    "out of order waits for the oldest",
			offsets: []int64{10, 11, 12, 13},
			acks:    []int{2, 3, 0, 1},
			want:    []int64{-1, -1, 11, 14},
		},
		{
			name:    "offset gaps (control records, compaction)",
			offsets: []int64{10, 12, 15},
			acks:    []int{1, 0, 2},
			want:    []int64{-1, 13, 16},
		},
		{
			name:    "failed ack is never committed past",
			offsets: []int64{0, 1, 2, 3, 4},
			acks:    []int{0, 2, 1, 3, 4},
			fail:    map[int]bool{2: true},
			want:    []int64{1, 1, 2, 2, 2},
		},
		{
			name:    "failed first record blocks everything",
			offsets: []int64{7, 8},
			acks:    []int{1, 0},
			fail:    map[int]bool{0: true},
			want:    []int64{-1, -1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newOffsetTracker()
			acks := make([]func(error), len(tc.offsets))
			for i, o := range tc.offsets {
				acks[i] = tr.track("t", 0, o, 1)
			}
			for step, i := range tc.acks {
				var err error
				if tc.fail[i] {
					err = errBoom
				}
				acks[i](err)
				if got := next(tr, 0); got != tc.want[step] {
					t.Fatalf("after acking offset %d (step %d): committable %d, want %d", tc.offsets[i], step, got, tc.want[step])
				}
			}
			if n := tr.inFlight(); n != 0 {
				t.Errorf("inFlight = %d after every ack, want 0", n)
			}
			if n := tr.failedAcks(); n != len(tc.fail) {
				t.Errorf("failedAcks = %d, want %d", n, len(tc.fail))
			}
		})
	}
}

func TestTrackerCommittedAndEpoch(t *testing.T) {
	tr := newOffsetTracker()
	a := tr.track("t", 0, 5, 3)
	b := tr.track("t", 0, 6, 4)
	a(nil)
	b(nil)
	pts := tr.committable(nil)
	if len(pts) != 1 || pts[0].offset != 7 || pts[0].epoch != 4 {
		t.Fatalf("committable = %+v, want offset 7 epoch 4", pts)
	}
	tr.committed(pts[0])
	if pts := tr.committable(nil); len(pts) != 0 {
		t.Fatalf("after committed: committable = %+v, want none", pts)
	}
	// An older point committed late must not move the mark back.
	tr.committed(commitPoint{part: pts0(t, tr), offset: 6})
	c := tr.track("t", 0, 7, 4)
	c(nil)
	if got := next(tr, 0); got != 8 {
		t.Fatalf("committable = %d, want 8", got)
	}
}

// pts0 returns the tracked state of ("t", 0).
func pts0(t *testing.T, tr *offsetTracker) *partitionTrack {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	p := tr.parts[topicPartition{"t", 0}]
	if p == nil {
		t.Fatal("partition t/0 not tracked")
	}
	return p
}

func TestTrackerDoubleAckIgnored(t *testing.T) {
	tr := newOffsetTracker()
	a := tr.track("t", 0, 0, 0)
	b := tr.track("t", 0, 1, 0)
	a(errors.New("first outcome wins"))
	a(nil)
	b(nil)
	b(nil)
	if got := next(tr, 0); got != -1 {
		t.Fatalf("committable = %d, want -1 (offset 0 failed first)", got)
	}
	if n := tr.inFlight(); n != 0 {
		t.Fatalf("inFlight = %d, want 0", n)
	}
}

func TestTrackerOnlyFilter(t *testing.T) {
	tr := newOffsetTracker()
	tr.track("t", 0, 0, 0)(nil)
	tr.track("t", 1, 0, 0)(nil)
	pts := tr.committable(map[topicPartition]bool{{"t", 1}: true})
	if len(pts) != 1 || pts[0].part.tp.partition != 1 {
		t.Fatalf("committable(only t/1) = %+v", pts)
	}
}

func TestTrackerPartitionLossDropsState(t *testing.T) {
	tr := newOffsetTracker()
	old := []func(error){tr.track("t", 0, 0, 0), tr.track("t", 0, 1, 0), tr.track("t", 0, 2, 0)}
	other := tr.track("t", 1, 0, 0)
	old[0](nil)
	tr.drop([]topicPartition{{"t", 0}})

	if n := tr.inFlight(); n != 1 {
		t.Fatalf("inFlight = %d after drop, want 1 (t/1 still pending)", n)
	}
	if got := next(tr, 0); got != -1 {
		t.Fatalf("dropped partition still committable at %d", got)
	}

	// The partition comes back (a later assignment) and starts from the
	// committed offset 1; late acks from the old period must not count.
	fresh := tr.track("t", 0, 1, 0)
	old[1](nil)
	old[2](nil)
	if got := next(tr, 0); got != -1 {
		t.Fatalf("late acks of a lost partition made offset %d committable", got)
	}
	fresh(nil)
	if got := next(tr, 0); got != 2 {
		t.Fatalf("committable = %d, want 2", got)
	}
	other(nil)
	if got := next(tr, 1); got != 1 {
		t.Fatalf("t/1 committable = %d, want 1", got)
	}
	if n := tr.inFlight(); n != 0 {
		t.Fatalf("inFlight = %d, want 0", n)
	}
}

func TestTrackerRewindStartsFresh(t *testing.T) {
	tr := newOffsetTracker()
	a := tr.track("t", 0, 10, 0)
	tr.track("t", 0, 11, 0) // never acked: the rewind below abandons it
	a(nil)
	b := tr.track("t", 0, 3, 0) // fetch position moved back (offset reset)
	if got := next(tr, 0); got != -1 {
		t.Fatalf("after rewind committable = %d, want -1", got)
	}
	b(nil)
	if got := next(tr, 0); got != 4 {
		t.Fatalf("committable = %d, want 4", got)
	}
	if n := tr.inFlight(); n != 0 {
		t.Fatalf("inFlight = %d, want 0", n)
	}
}

// TestTrackerConcurrentAcks acks shuffled records from many goroutines while
// a committer reads and marks committable points, as the commit loop does.
// Run with -race.
func TestTrackerConcurrentAcks(t *testing.T) {
	const (
		partitions = 4
		perPart    = 2000
		workers    = 8
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tr := newOffsetTracker()
	type job struct {
		ack  func(error)
		fail bool
	}
	var jobs []job
	failAt := map[int32]int64{2: 1500} // partition 2 fails one record
	for p := int32(0); p < partitions; p++ {
		for o := int64(0); o < perPart; o++ {
			jobs = append(jobs, job{ack: tr.track("t", p, o, 0), fail: failAt[p] == o && p == 2})
		}
	}
	rand.Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })

	ch := make(chan job)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for j := range ch {
				var err error
				if j.fail {
					err = errors.New("failed")
				}
				j.ack(err)
			}
		})
	}

	stop := make(chan struct{})
	committerDone := make(chan error, 1)
	go func() {
		last := map[int32]int64{}
		for {
			for _, pt := range tr.committable(nil) {
				p := pt.part.tp.partition
				if pt.offset < last[p] {
					committerDone <- errors.New("committable offset went backwards")
					return
				}
				if p == 2 && pt.offset > failAt[2] {
					committerDone <- errors.New("committed past a failed ack")
					return
				}
				last[p] = pt.offset
				tr.committed(pt)
			}
			select {
			case <-stop:
				committerDone <- nil
				return
			case <-ctx.Done():
				committerDone <- ctx.Err()
				return
			default:
			}
		}
	}()

	for _, j := range jobs {
		select {
		case ch <- j:
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	close(ch)
	wg.Wait()
	close(stop)
	if err := <-committerDone; err != nil {
		t.Fatal(err)
	}
	if err := tr.waitIdle(ctx); err != nil {
		t.Fatalf("waitIdle: %v", err)
	}
	for p := int32(0); p < partitions; p++ {
		want := int64(perPart)
		if p == 2 {
			want = failAt[2]
		}
		got := pts(tr, p).next
		if got != want {
			t.Errorf("partition %d: committable %d, want %d", p, got, want)
		}
	}
}

func pts(tr *offsetTracker, p int32) *partitionTrack {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.parts[topicPartition{"t", p}]
}

func TestTrackerWaitIdleHonoursContext(t *testing.T) {
	tr := newOffsetTracker()
	ack := tr.track("t", 0, 0, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := tr.waitIdle(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waitIdle with an unacked record = %v, want DeadlineExceeded", err)
	}
	ack(nil)
	if err := tr.waitIdle(context.Background()); err != nil {
		t.Fatalf("waitIdle after ack = %v", err)
	}
}
