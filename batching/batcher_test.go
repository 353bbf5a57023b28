package batching

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The tests that wait run inside synctest bubbles. The Batcher reads
// time.Now and arms a time.Timer itself, and that timer handling is part of
// what these tests check, so they fake the clock around it rather than
// injecting one: in a bubble, time stands still while any goroutine can run
// and jumps to the next timer once every goroutine is blocked. A delay flush
// therefore happens exactly MaxDelay after its item, context timeouts expire
// without real waiting, and each test finishes instantly.
//
// testDeadline bounds every wait in these tests; a hang fails instead of
// stalling the suite (in a bubble the fake clock reaches it at once).
const testDeadline = 5 * time.Second

func mustNew(t *testing.T, cfg Config) *Batcher {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
		defer cancel()
		b.Close(ctx) // no-op when the test closed it already
	})
	return b
}

// collect calls Next until the batcher is closed, on its own goroutine,
// and returns a function that waits (bounded) for the batches.
func collect(t *testing.T, b *Batcher) func() []*Batch {
	t.Helper()
	done := make(chan []*Batch, 1)
	go func() {
		var got []*Batch
		for {
			bt, ok := b.Next()
			if !ok {
				done <- got
				return
			}
			got = append(got, bt)
		}
	}()
	return func() []*Batch {
		select {
		case got := <-done:
			return got
		case <-time.After(testDeadline):
			t.Fatal("collector did not finish")
			return nil
		}
	}
}

// nextWithin waits for Next, or fails the test after testDeadline.
func nextWithin(t *testing.T, b *Batcher) (*Batch, bool) {
	t.Helper()
	type next struct {
		bt *Batch
		ok bool
	}
	got := make(chan next, 1)
	go func() { bt, ok := b.Next(); got <- next{bt, ok} }()
	select {
	case n := <-got:
		return n.bt, n.ok
	case <-time.After(testDeadline):
		t.Fatal("no batch and no close in time")
		return nil, false
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	t.Cleanup(cancel)
	return ctx
}

func TestBatcherSizeThenDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Config{NumSkills: 5, MaxBatchSize: 2, MaxDelay: time.Hour, MaxPaddedSteps: 1000})
		wait := collect(t, b)
		for i := range 3 {
			if err := b.Add(ctxT(t), seq(i, 4, 5)); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Close(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		got := wait()
		if want := []string{"size:[0 1]", "drain:[2]"}; !slices.Equal(describe(got), want) {
			t.Fatalf("batches %v, want %v", describe(got), want)
		}
		for _, bt := range got {
			checkContract(t, bt, 5)
			bt.Release()
		}
		if err := b.Add(ctxT(t), seq(9, 4, 5)); !errors.Is(err, ErrClosed) {
			t.Fatalf("Add after Close = %v, want ErrClosed", err)
		}
		s := b.Stats()
		if s.Flushes[FlushSize] != 1 || s.Flushes[FlushDrain] != 1 || s.Batches != 2 || s.Items != 3 || s.Pending != 0 {
			t.Errorf("Stats = %+v", s)
		}
	})
}

func TestBatcherDelayFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 20 * time.Millisecond
		b := mustNew(t, Config{NumSkills: 5, MaxBatchSize: 10, MaxDelay: delay, MaxPaddedSteps: 1000})
		start := time.Now()
		if err := b.Add(ctxT(t), seq(1, 3, 5)); err != nil {
			t.Fatal(err)
		}
		bt, _ := nextWithin(t, b)
		if bt.Reason != FlushDelay || len(bt.Items) != 1 {
			t.Fatalf("got %v, want one delay batch", describe([]*Batch{bt}))
		}
		if waited := time.Since(start); waited != delay {
			t.Errorf("flushed after %v, want exactly MaxDelay %v", waited, delay)
		}
		bt.Release()
		// The timer must re-arm for a later bucket, too.
		start = time.Now()
		if err := b.Add(ctxT(t), seq(2, 8, 5)); err != nil {
			t.Fatal(err)
		}
		bt, _ = nextWithin(t, b)
		if bt.Reason != FlushDelay {
			t.Fatalf("reason %v, want delay", bt.Reason)
		}
		if waited := time.Since(start); waited != delay {
			t.Errorf("second flush after %v, want exactly MaxDelay %v", waited, delay)
		}
		bt.Release()
		if s := b.Stats(); s.Flushes[FlushDelay] != 2 {
			t.Errorf("Stats = %+v", s)
		}
	})
}

func TestBatcherBackpressureAndCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Config{NumSkills: 5, MaxBatchSize: 1, MaxDelay: time.Hour, MaxPaddedSteps: 1000})
		// Nobody calls Next: the first item's batch occupies the loop.
		if err := b.Add(ctxT(t), seq(1, 3, 5)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if err := b.Add(ctx, seq(2, 3, 5)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Add with a stalled consumer = %v, want DeadlineExceeded", err)
		}
		wait := collect(t, b)
		if err := b.Close(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		got := wait()
		if want := []string{"size:[1]"}; !slices.Equal(describe(got), want) {
			t.Fatalf("batches %v, want %v (the cancelled item must not be queued)", describe(got), want)
		}
	})
}

func TestBatcherCloseGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Config{NumSkills: 5, MaxBatchSize: 10, MaxDelay: time.Hour, MaxPaddedSteps: 1000})
		for i := range 3 {
			if err := b.Add(ctxT(t), seq(i, 1+i*5, 5)); err != nil {
				t.Fatal(err)
			}
		}
		// Nobody reads: Close cannot deliver the three drain batches.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if err := b.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Close = %v, want DeadlineExceeded", err)
		}
		if bt, ok := nextWithin(t, b); ok {
			t.Fatalf("batch %v delivered after Close gave up", describe([]*Batch{bt}))
		}
		if s := b.Stats(); s.Discarded != 3 || s.Pending != 0 {
			t.Errorf("Stats = %+v, want 3 discarded, 0 pending", s)
		}
		if err := b.Add(ctxT(t), seq(9, 2, 5)); !errors.Is(err, ErrClosed) {
			t.Fatalf("Add after Close = %v, want ErrClosed", err)
		}
		if err := b.Close(ctxT(t)); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("second Close = %v", err)
		}
	})
}

func TestBatcherRejectsInvalidItem(t *testing.T) {
	b := mustNew(t, testConfig())
	err := b.Add(ctxT(t), Item{Skills: []int32{1, 99}, Correct: []int8{0, 1}})
	if !errors.Is(err, ErrInvalidItem) {
		t.Fatalf("Add = %v, want ErrInvalidItem", err)
	}
}

// Concurrent producers and a consumer: every item comes out exactly once and
// every batch honours the contract; run under -race. The bubble's clock only
// moves when every goroutine is blocked, so the producers pause now and then:
// delay flushes then fire between size flushes and concurrent Adds, as they
// would under a real clock.
func TestBatcherConcurrentProducers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const producers, perProducer = 4, 200
		cfg := Config{NumSkills: 7, MaxBatchSize: 8, MaxDelay: 2 * time.Millisecond, MaxPaddedSteps: 8 * 64}
		b := mustNew(t, cfg)
		wait := collect(t, b)
		var wg sync.WaitGroup
		errs := make(chan error, producers)
		for p := range producers {
			wg.Go(func() {
				for i := range perProducer {
					if i%25 == 0 {
						time.Sleep(cfg.MaxDelay / 2)
					}
					ref := p*perProducer + i
					if err := b.Add(ctxT(t), seq(ref, 1+ref%97, cfg.NumSkills)); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if err := b.Close(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		seen := make(map[int]int)
		for _, bt := range wait() {
			checkContract(t, bt, cfg.NumSkills)
			for _, it := range bt.Items {
				seen[it.Ref.(int)]++
			}
			bt.Release()
		}
		for ref := range producers * perProducer {
			if seen[ref] != 1 {
				t.Fatalf("item %d delivered %d times", ref, seen[ref])
			}
		}
		s := b.Stats()
		if s.Items != producers*perProducer || s.Pending != 0 {
			t.Errorf("Stats = %+v", s)
		}
		if s.Flushes[FlushDelay] == 0 {
			t.Error("no delay flush while producers paused longer than MaxDelay in total")
		}
		t.Logf("flushes by reason: size %d, bucket %d, delay %d, drain %d",
			s.Flushes[FlushSize], s.Flushes[FlushBucket], s.Flushes[FlushDelay], s.Flushes[FlushDrain])
	})
}

// With FlushWhenIdle, an idle consumer gets an item at once; items that
// arrive while it is busy gather, and the fullest bucket goes out as soon as
// it asks again, without waiting for MaxDelay.
func TestBatcherFlushWhenIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := mustNew(t, Config{NumSkills: 5, MaxBatchSize: 10, MaxDelay: time.Hour, MaxPaddedSteps: 1000, BucketGrowth: 1.1, FlushWhenIdle: true})
		next := func() *Batch {
			got := make(chan *Batch, 1)
			go func() { bt, _ := b.Next(); got <- bt }()
			synctest.Wait() // Next is waiting, and the batcher has seen it
			select {
			case bt := <-got:
				return bt
			default:
				return nil
			}
		}
		start := time.Now()
		consumer := make(chan *Batch, 1)
		go func() { bt, _ := b.Next(); consumer <- bt }()
		synctest.Wait()
		if err := b.Add(ctxT(t), seq(0, 4, 5)); err != nil {
			t.Fatal(err)
		}
		first := <-consumer
		if first.Reason != FlushIdle || len(first.Items) != 1 || time.Since(start) != 0 {
			t.Fatalf("first batch %v after %v, want one item flushed at once as idle", describe([]*Batch{first}), time.Since(start))
		}
		first.Release()
		// The consumer is busy now: three items of length 4 and one of
		// length 9 (another bucket) wait.
		for i, n := range []int{4, 9, 4, 4} {
			if err := b.Add(ctxT(t), seq(i+1, n, 5)); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if p := b.Stats().Pending; p != 4 {
			t.Fatalf("%d items pending while no consumer waits, want 4", p)
		}
		fullest := next()
		if fullest == nil || !slices.Equal(describe([]*Batch{fullest}), []string{"idle:[1 3 4]"}) || time.Since(start) != 0 {
			t.Fatalf("got %v after %v, want the fullest bucket idle:[1 3 4] at once", describe([]*Batch{fullest}), time.Since(start))
		}
		fullest.Release()
		if rest := next(); rest == nil || !slices.Equal(describe([]*Batch{rest}), []string{"idle:[2]"}) {
			t.Fatalf("got %v, want the other bucket idle:[2]", describe([]*Batch{rest}))
		} else {
			rest.Release()
		}
		if s := b.Stats(); s.Flushes[FlushIdle] != 3 || s.Flushes[FlushDelay] != 0 {
			t.Errorf("Stats = %+v, want 3 idle flushes and no delay", s)
		}
	})
}

// Without FlushWhenIdle, a waiting consumer does not hurry the batcher: the
// bucket waits for MaxDelay to gather more.
func TestBatcherWaitsForTheDelayUnlessFlushWhenIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 20 * time.Millisecond
		b := mustNew(t, Config{NumSkills: 5, MaxBatchSize: 10, MaxDelay: delay, MaxPaddedSteps: 1000})
		start := time.Now()
		got := make(chan *Batch, 1)
		go func() { bt, _ := b.Next(); got <- bt }()
		synctest.Wait()
		if err := b.Add(ctxT(t), seq(0, 4, 5)); err != nil {
			t.Fatal(err)
		}
		bt := <-got
		if bt.Reason != FlushDelay || time.Since(start) != delay {
			t.Fatalf("reason %v after %v, want a delay flush after %v", bt.Reason, time.Since(start), delay)
		}
		bt.Release()
	})
}

// With FlushWhenIdle nothing is cut by its delay while every consumer is
// busy — the bucket keeps gathering — but a bucket overdue by MaxDelay goes
// to the next idle consumer before a fuller one.
func TestBatcherIdleServesTheOverdueFirstAndNeverCutsByDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const delay = 10 * time.Millisecond
		b := mustNew(t, Config{NumSkills: 5, MaxBatchSize: 10, MaxDelay: delay, MaxPaddedSteps: 1000, BucketGrowth: 1.1, FlushWhenIdle: true})
		if err := b.Add(ctxT(t), seq(0, 9, 5)); err != nil { // the short-lived bucket: one item
			t.Fatal(err)
		}
		time.Sleep(2 * delay) // every consumer busy: no batch may be cut meanwhile
		for i := range 3 {
			if err := b.Add(ctxT(t), seq(i+1, 4, 5)); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		if s := b.Stats(); s.Batches != 0 || s.Pending != 4 {
			t.Fatalf("Stats = %+v, want nothing cut while no consumer waits", s)
		}
		first, _ := b.Next()
		if got := describe([]*Batch{first}); !slices.Equal(got, []string{"idle:[0]"}) {
			t.Fatalf("first %v, want the overdue idle:[0] before the fuller bucket", got)
		}
		first.Release()
		second, _ := b.Next()
		if got := describe([]*Batch{second}); !slices.Equal(got, []string{"idle:[1 2 3]"}) {
			t.Fatalf("second %v, want idle:[1 2 3]", got)
		}
		second.Release()
	})
}
