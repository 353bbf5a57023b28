package batching

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Batcher.Add once Close has been called.
var ErrClosed = errors.New("batching: batcher is closed")

// Batcher runs an Assembler on its own goroutine with a real clock.
//
// Event order. One goroutine (loop) owns the Assembler; everything reaches it
// through channels, so the Assembler needs no lock.
//
//  1. Add validates on the caller's goroutine (so a bad item is answered
//     without a round trip) and hands the item to loop over the unbuffered
//     channel in. Add returns nil only once loop has received the item, so an
//     accepted item is always either delivered or counted as discarded.
//  2. loop files the item; batches it completes are sent on the unbuffered
//     channel out before loop receives again. A slow consumer therefore
//     stalls loop, which stops receiving from in, which blocks Add: that is
//     the backpressure, and it bounds memory to the items waiting in buckets
//     plus one batch in hand.
//  3. After every event loop re-arms one timer for the Assembler's next
//     deadline. When it fires, loop flushes the expired buckets (FlushDelay).
//     While loop is blocked on a slow consumer the timer waits too; delay
//     flushes then happen late, which only matters when the consumer is
//     already the bottleneck.
//  4. Close closes closing. Add checks closing before anything else, so after
//     Close starts no new item is accepted (an Add racing with Close may
//     still win the send; its item is then drained like the others). loop
//     sees closing, drains every bucket (FlushDrain), delivers the batches,
//     closes out and done.
//  5. If Close's ctx ends first, Close closes abandon: loop stops delivering,
//     releases what it holds, counts those items as Discarded and exits, so
//     Close never leaves the goroutine behind.
//  6. With FlushWhenIdle, consumers call Next. Next adds one to idle before it
//     waits, and pokes loop through the one-slot channel wake; loop takes one
//     off for every batch it delivers, so idle counts the consumers waiting
//     with no batch on its way to them. After every event, while idle is
//     above zero and items wait, loop flushes a bucket for them and delivers
//     it (FlushIdle; Assembler.ForIdle picks which). No timer runs: a
//     batch cut by its delay while every consumer is busy would only wait
//     for one, and stop gathering the items that arrive meanwhile. So an idle
//     consumer never waits for MaxDelay, items gather into fuller batches
//     while every consumer is busy, and MaxDelay instead bounds how long a
//     bucket may be passed over for fuller ones.
type Batcher struct {
	asm *Assembler
	now func() time.Time

	in      chan Item
	out     chan *Batch
	closing chan struct{} // closed by Close: stop accepting, drain
	abandon chan struct{} // closed by Close when its ctx ends: stop delivering
	done    chan struct{} // closed by loop on exit, after out

	eager bool          // Config.FlushWhenIdle
	idle  atomic.Int64  // consumers waiting in Next with no batch on its way (event 6)
	wake  chan struct{} // Next's poke, one slot: a pending poke covers later ones

	closeOnce   sync.Once
	abandonOnce sync.Once
}

// New validates cfg and starts the batcher's goroutine; Close stops it.
func New(cfg Config) (*Batcher, error) {
	asm, err := NewAssembler(cfg)
	if err != nil {
		return nil, err
	}
	b := &Batcher{
		asm:     asm,
		now:     time.Now,
		in:      make(chan Item),
		out:     make(chan *Batch),
		closing: make(chan struct{}),
		abandon: make(chan struct{}),
		done:    make(chan struct{}),
		eager:   cfg.FlushWhenIdle,
		wake:    make(chan struct{}, 1),
	}
	go b.loop()
	return b, nil
}

// Add queues an item. It blocks while the consumer of batches (Next) is behind,
// returns ctx.Err() if ctx ends first, ErrClosed after Close, and an error
// wrapping ErrInvalidItem for an item the batcher cannot pad. The batcher
// keeps the item's slices until the batch holding it is released.
func (b *Batcher) Add(ctx context.Context, it Item) error {
	if err := ValidateItem(it, b.asm.cfg.NumSkills); err != nil {
		return err
	}
	// Checked first because select picks randomly among ready cases: an
	// ended ctx or a closed batcher must win over an idle loop.
	select {
	case <-b.closing:
		return ErrClosed
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case b.in <- it:
		return nil
	case <-b.closing:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Next waits for the next batch; false once the batcher is closed and
// drained. The consumer should Release each batch once the model has
// consumed it. With FlushWhenIdle, a waiting Next makes the batcher send a
// bucket at once rather than after MaxDelay.
func (b *Batcher) Next() (*Batch, bool) {
	if b.eager {
		b.idle.Add(1)
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	bt, ok := <-b.out
	return bt, ok
}

// Stats returns the cumulative counters; safe to call from any goroutine.
func (b *Batcher) Stats() Stats { return b.asm.Stats() }

// Close stops accepting items, flushes every bucket with FlushDrain, waits
// until the consumer has received those batches and makes Next report the end. If ctx
// ends first, the undelivered batches are released, their items counted in
// Stats.Discarded, and the ctx error is returned; the goroutine has exited
// either way when Close returns. Calling Close again waits the same way.
func (b *Batcher) Close(ctx context.Context) error {
	b.closeOnce.Do(func() { close(b.closing) })
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		b.abandonOnce.Do(func() { close(b.abandon) })
		<-b.done // prompt: loop only ever blocks on out, and abandon unblocks it
		if d := b.asm.Stats().Discarded; d > 0 {
			return fmt.Errorf("batching: close gave up with %d sequences undelivered (they were not scored): %w", d, ctx.Err())
		}
		return nil
	}
}

func (b *Batcher) loop() {
	defer close(b.done)
	defer close(b.out)
	timer := time.NewTimer(0)
	timer.Stop()
	var armed time.Time // deadline the timer is set for; zero when stopped
	for {
		var batches []*Batch
		draining := false
		select {
		case it := <-b.in:
			batches = b.asm.add(it, b.now())
		case <-timer.C:
			armed = time.Time{}
			batches = b.asm.Expired(b.now())
		case <-b.closing:
			batches, draining = b.asm.Drain(), true
		case <-b.wake:
		}
		if !b.deliver(batches) || draining {
			b.asm.discard()
			return
		}
		for b.eager && b.idle.Load() > 0 {
			bt := b.asm.ForIdle(b.now())
			if bt == nil {
				break
			}
			if !b.deliver([]*Batch{bt}) {
				b.asm.discard()
				return
			}
		}
		// Since Go 1.23 Reset and Stop discard a pending fire, so a stale
		// deadline can never flush early; re-arming only on change keeps
		// the common case (another item in an already-waiting bucket) cheap.
		if b.eager {
			continue // idle consumers take the buckets (event 6)
		}
		if next, ok := b.asm.NextDeadline(); !ok {
			if !armed.IsZero() {
				timer.Stop()
				armed = time.Time{}
			}
		} else if !next.Equal(armed) {
			timer.Reset(max(next.Sub(b.now()), 0))
			armed = next
		}
	}
}

// deliver sends batches in order; false means Close gave up, in which case
// the undelivered ones are released and their items counted as discarded.
func (b *Batcher) deliver(batches []*Batch) bool {
	for i, bt := range batches {
		select {
		case b.out <- bt:
			if b.eager {
				b.idle.Add(-1) // the receiver was counted by Next
			}
		case <-b.abandon:
			for _, rest := range batches[i:] {
				b.asm.stats.discarded.Add(uint64(len(rest.Items)))
				rest.Release()
			}
			return false
		}
	}
	return true
}
