package batching

import "sync/atomic"

// Stats are cumulative counters since the batcher was created, meant to be
// exported as metrics.
type Stats struct {
	Flushes       [NumFlushReasons]uint64 // batches emitted, indexed by FlushReason
	Batches       uint64                  // sum of Flushes
	Items         uint64                  // sequences emitted in batches
	RealSteps     uint64                  // sum of sequence lengths emitted
	ComputedSteps uint64                  // sum of B·T emitted
	Pending       int64                   // sequences waiting in buckets now
	Discarded     uint64                  // sequences dropped because Close gave up before they were delivered
}

// counters are atomics because the Assembler's goroutine writes them while a
// metrics scraper reads them through Batcher.Stats.
type counters struct {
	flushes       [NumFlushReasons]atomic.Uint64
	items         atomic.Uint64
	realSteps     atomic.Uint64
	computedSteps atomic.Uint64
	pending       atomic.Int64
	discarded     atomic.Uint64
}

func (c *counters) emitted(b *Batch, real int) {
	c.flushes[b.Reason].Add(1)
	c.items.Add(uint64(len(b.Items)))
	c.realSteps.Add(uint64(real))
	c.computedSteps.Add(uint64(b.ComputedSteps()))
	c.pending.Add(-int64(len(b.Items)))
}

func (c *counters) snapshot() Stats {
	var s Stats
	for i := range c.flushes {
		s.Flushes[i] = c.flushes[i].Load()
		s.Batches += s.Flushes[i]
	}
	s.Items = c.items.Load()
	s.RealSteps = c.realSteps.Load()
	s.ComputedSteps = c.computedSteps.Load()
	s.Pending = c.pending.Load()
	s.Discarded = c.discarded.Load()
	return s
}
