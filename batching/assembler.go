package batching

import (
	"slices"
	"time"
)

// Assembler is the deterministic core of the batcher: it files items into
// length buckets and decides when a bucket becomes a Batch. It never reads
// the clock and never blocks; callers pass the time in, which makes every
// flush reproducible in tests. It is not safe for concurrent use (Stats and
// Batch.Release excepted); Batcher is the concurrent wrapper.
type Assembler struct {
	cfg     Config
	lengths lengthBuckets
	buckets []*bucket // by bucket index; nil until a length of that bucket arrives
	waiting []*bucket // non-empty buckets, in no particular order
	seq     uint64    // arrival counter; orders flushes so they do not depend on map or slice order
	pool    bufferPool
	stats   counters
}

type bucket struct {
	items      []Item
	longest    int
	oldest     time.Time // arrival of items[0]; the delay deadline counts from here
	oldestSeq  uint64
	waitingIdx int // position in Assembler.waiting, or -1 when empty
}

// NewAssembler returns an Assembler for a valid config.
func NewAssembler(cfg Config) (*Assembler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Assembler{cfg: cfg, lengths: lengthBuckets{growth: cfg.growth()}}, nil
}

// Config returns the policy the Assembler was built with.
func (a *Assembler) Config() Config { return a.cfg }

// Add files an item and returns the batches that became complete because of
// it: at most two, when the item does not fit next to its bucket's waiting
// items (that bucket is flushed first) and then fills the new batch at once.
// An invalid item is rejected with an error wrapping ErrInvalidItem and
// changes nothing.
func (a *Assembler) Add(it Item, now time.Time) ([]*Batch, error) {
	if err := ValidateItem(it, a.cfg.NumSkills); err != nil {
		return nil, err
	}
	return a.add(it, now), nil
}

// add is Add for an item that is already validated.
func (a *Assembler) add(it Item, now time.Time) []*Batch {
	n := len(it.Skills)
	bk := a.bucketFor(n)
	var out []*Batch
	// T is the longest item, so adding a longer one re-pads everyone waiting.
	if len(bk.items) > 0 && a.cost(len(bk.items)+1, max(bk.longest, n)) > a.cfg.MaxPaddedSteps {
		out = append(out, a.flush(bk, FlushBucket))
	}
	if len(bk.items) == 0 {
		if bk.items == nil {
			// Room for as many items as can share a batch with this one, from
			// the pool: growing the list by append would allocate several
			// times per batch.
			bk.items = a.pool.items.get(min(a.cfg.MaxBatchSize, max(1, a.cfg.MaxPaddedSteps/a.cost(1, n))))[:0]
		}
		bk.oldest, bk.oldestSeq = now, a.seq
		bk.waitingIdx = len(a.waiting)
		a.waiting = append(a.waiting, bk)
	}
	a.seq++
	bk.items = append(bk.items, it)
	bk.longest = max(bk.longest, n)
	a.stats.pending.Add(1)
	switch {
	case len(bk.items) >= a.cfg.MaxBatchSize:
		out = append(out, a.flush(bk, FlushSize))
	case a.cost(len(bk.items)+1, bk.longest) > a.cfg.MaxPaddedSteps:
		// No next item can fit (it would make B·T at least this much), so
		// waiting for MaxDelay would only add latency. This also sends a
		// sequence longer than the whole budget out alone, at once.
		out = append(out, a.flush(bk, FlushBucket))
	}
	return out
}

// Expired flushes, oldest first, every bucket whose oldest item arrived at
// least MaxDelay before now.
func (a *Assembler) Expired(now time.Time) []*Batch {
	var due []*bucket
	for _, bk := range a.waiting {
		if !now.Before(bk.oldest.Add(a.cfg.MaxDelay)) {
			due = append(due, bk)
		}
	}
	return a.flushAll(due, FlushDelay)
}

// NextDeadline is when Expired will next have something to flush; false when
// nothing is waiting.
func (a *Assembler) NextDeadline() (time.Time, bool) {
	var next time.Time
	for i, bk := range a.waiting {
		if i == 0 || bk.oldest.Before(next) {
			next = bk.oldest
		}
	}
	if len(a.waiting) == 0 {
		return time.Time{}, false
	}
	return next.Add(a.cfg.MaxDelay), true
}

// ForIdle flushes a bucket for a consumer that is waiting, with FlushIdle:
// the oldest one whose first item has waited MaxDelay or longer, so that no
// short bucket is passed over for long, else the one with the most items
// (the oldest of those tied), the most work one call can do. nil when
// nothing waits.
func (a *Assembler) ForIdle(now time.Time) *Batch {
	var overdue, fullest *bucket
	for _, bk := range a.waiting {
		if !now.Before(bk.oldest.Add(a.cfg.MaxDelay)) && (overdue == nil || bk.oldestSeq < overdue.oldestSeq) {
			overdue = bk
		}
		if fullest == nil || len(bk.items) > len(fullest.items) || (len(bk.items) == len(fullest.items) && bk.oldestSeq < fullest.oldestSeq) {
			fullest = bk
		}
	}
	switch {
	case overdue != nil:
		return a.flush(overdue, FlushIdle)
	case fullest != nil:
		return a.flush(fullest, FlushIdle)
	}
	return nil
}

// Drain flushes every waiting bucket, oldest first, with FlushDrain.
func (a *Assembler) Drain() []*Batch {
	return a.flushAll(slices.Clone(a.waiting), FlushDrain)
}

// Pending is the number of items waiting in buckets.
func (a *Assembler) Pending() int { return int(a.stats.pending.Load()) }

// Stats returns the cumulative counters; safe to call from any goroutine.
func (a *Assembler) Stats() Stats { return a.stats.snapshot() }

// discard drops everything waiting without building batches; used only when
// Close gives up, so nothing is left holding the caller's slices.
func (a *Assembler) discard() {
	for _, bk := range a.waiting {
		a.stats.discarded.Add(uint64(len(bk.items)))
		a.stats.pending.Add(-int64(len(bk.items)))
		bk.items, bk.longest, bk.waitingIdx = nil, 0, -1
	}
	a.waiting = a.waiting[:0]
}

// cost is what MaxPaddedSteps bounds for a batch of rows sequences, the
// longest of longest steps: the size of its one model call, B·T; or with
// ChunkSteps, of its largest block, B·min(T, ChunkSteps). A long history
// then no longer forms a batch of one: histories of its length bucket share
// its blocks, whatever their length.
func (a *Assembler) cost(rows, longest int) int {
	if a.cfg.ChunkSteps > 0 {
		return rows * min(longest, a.cfg.ChunkSteps)
	}
	return rows * longest
}

func (a *Assembler) bucketFor(n int) *bucket {
	i := a.lengths.index(n)
	if i >= len(a.buckets) {
		a.buckets = append(a.buckets, make([]*bucket, i+1-len(a.buckets))...)
	}
	if a.buckets[i] == nil {
		a.buckets[i] = &bucket{waitingIdx: -1}
	}
	return a.buckets[i]
}

func (a *Assembler) flushAll(bks []*bucket, reason FlushReason) []*Batch {
	if len(bks) == 0 {
		return nil
	}
	slices.SortFunc(bks, func(x, y *bucket) int {
		switch {
		case x.oldestSeq < y.oldestSeq:
			return -1
		case x.oldestSeq > y.oldestSeq:
			return 1
		}
		return 0
	})
	out := make([]*Batch, 0, len(bks))
	for _, bk := range bks {
		out = append(out, a.flush(bk, reason))
	}
	return out
}

func (a *Assembler) flush(bk *bucket, reason FlushReason) *Batch {
	items := bk.items
	b := padToLongest(&a.pool, items, reason, bk.oldest)
	b.pooledItems = true
	if a.cfg.ChunkSteps > 0 {
		b.ChunkSteps, b.BlockRows = a.cfg.ChunkSteps, a.cfg.MaxBatchSize
	}
	real := 0
	for _, it := range items {
		real += len(it.Skills)
	}
	a.stats.emitted(b, real)

	// The batch now owns items; the bucket starts a fresh slice so the two
	// never alias.
	bk.items, bk.longest = nil, 0
	last := a.waiting[len(a.waiting)-1]
	a.waiting[bk.waitingIdx] = last
	last.waitingIdx = bk.waitingIdx
	a.waiting = a.waiting[:len(a.waiting)-1]
	bk.waitingIdx = -1
	return b
}
