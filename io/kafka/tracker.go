package kafka

import (
	"context"
	"sync"
	"time"
)

// topicPartition names one partition.
type topicPartition struct {
	topic     string
	partition int32
}

// commitPoint is what may be committed for one partition: the offset of the
// next record to consume (the Kafka commit convention) and the leader epoch of
// the last record before it (kgo uses it to detect truncation on resume).
type commitPoint struct {
	part   *partitionTrack
	offset int64
	epoch  int32
}

// ackState is the life of one handed-out record.
type ackState uint8

const (
	ackPending ackState = iota
	ackDone
	ackFailed
)

type trackEntry struct {
	offset int64
	epoch  int32
	state  ackState
}

// partitionTrack is the tracking state of one partition for one ownership
// period. When the partition is revoked or lost the struct is marked dropped
// and forgotten; ack closures still point at it, so a late ack lands on the
// dropped struct and is ignored instead of touching a later ownership period
// of the same partition.
type partitionTrack struct {
	tp      topicPartition
	dropped bool

	// entries are the handed-out records not yet behind the committable point,
	// in hand-out order (which is offset order within a partition).
	// entries[0] has sequence number firstSeq.
	entries  []trackEntry
	firstSeq uint64

	next      int64 // committable offset: one past the contiguous acked prefix; -1 none yet
	nextEpoch int32
	committed int64 // last offset the broker accepted for this period; -1 none yet
	failed    int   // acks with an error: the prefix is stuck at the first one
}

// offsetTracker turns acks that arrive in any order into a per-partition
// committable offset: the end of the contiguous prefix of records acked with
// nil. The scorer batches by sequence length, so a record fetched later is
// often acked earlier; committing its offset would commit past records still
// in flight and lose them on a crash.
//
// A record acked with an error blocks its partition's prefix for the rest of
// the ownership period: nothing at or past it is committed, so after a restart
// or rebalance the record and everything after it is delivered again.
//
// The tracker has no Kafka types and never calls out while holding its lock,
// so it can be used from kgo's callbacks and tested without a broker.
type offsetTracker struct {
	mu      sync.Mutex
	parts   map[topicPartition]*partitionTrack
	pending int // handed-out records not acked yet, over all partitions
}

func newOffsetTracker() *offsetTracker {
	return &offsetTracker{parts: make(map[topicPartition]*partitionTrack)}
}

// track registers a record that is being handed out and returns its ack.
// Records of one partition must be tracked in offset order; an offset at or
// below the last tracked one means the fetch position moved back (an offset
// reset), and the old state is dropped so the new stream starts clean.
func (t *offsetTracker) track(topic string, partition int32, offset int64, epoch int32) func(error) {
	tp := topicPartition{topic, partition}
	t.mu.Lock()
	p := t.parts[tp]
	if p != nil && len(p.entries) > 0 && offset <= p.entries[len(p.entries)-1].offset {
		t.dropLocked(p)
		p = nil
	}
	if p != nil && len(p.entries) == 0 && p.next >= 0 && offset < p.next {
		t.dropLocked(p)
		p = nil
	}
	if p == nil {
		p = &partitionTrack{tp: tp, next: -1, committed: -1}
		t.parts[tp] = p
	}
	seq := p.firstSeq + uint64(len(p.entries))
	p.entries = append(p.entries, trackEntry{offset: offset, epoch: epoch})
	t.pending++
	t.mu.Unlock()

	return func(err error) { t.ack(p, seq, err) }
}

// ack records the outcome of one record; a second ack of the same record and
// an ack for a dropped partition are ignored.
func (t *offsetTracker) ack(p *partitionTrack, seq uint64, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.dropped || seq < p.firstSeq {
		return
	}
	i := seq - p.firstSeq
	if i >= uint64(len(p.entries)) || p.entries[i].state != ackPending {
		return
	}
	t.pending--
	if err != nil {
		p.entries[i].state = ackFailed
		p.failed++
		return
	}
	p.entries[i].state = ackDone
	// Advance over the acked prefix; a pending or failed entry stops it.
	n := 0
	for n < len(p.entries) && p.entries[n].state == ackDone {
		n++
	}
	if n == 0 {
		return
	}
	last := p.entries[n-1]
	p.next, p.nextEpoch = last.offset+1, last.epoch
	p.firstSeq += uint64(n)
	// Reslicing from the front keeps the queue O(1) per ack; append copies the
	// live tail into a fresh array once the capacity runs out, so the memory
	// stays within a small factor of the records in flight.
	p.entries = p.entries[n:]
	if len(p.entries) == 0 {
		p.entries = p.entries[:0:0]
	}
}

// committable returns, for every partition (or only those in only, when it is
// not nil) whose committable offset is past what the broker last accepted,
// the point to commit.
func (t *offsetTracker) committable(only map[topicPartition]bool) []commitPoint {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []commitPoint
	for tp, p := range t.parts {
		if only != nil && !only[tp] {
			continue
		}
		if p.next >= 0 && p.next > p.committed {
			out = append(out, commitPoint{part: p, offset: p.next, epoch: p.nextEpoch})
		}
	}
	return out
}

// committed records that the broker accepted pt; points of dropped
// partitions are ignored.
func (t *offsetTracker) committed(pt commitPoint) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !pt.part.dropped && pt.offset > pt.part.committed {
		pt.part.committed = pt.offset
	}
}

// drop forgets the given partitions: their pending acks become no-ops.
func (t *offsetTracker) drop(tps []topicPartition) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, tp := range tps {
		if p := t.parts[tp]; p != nil {
			t.dropLocked(p)
		}
	}
}

func (t *offsetTracker) dropLocked(p *partitionTrack) {
	for _, e := range p.entries {
		if e.state == ackPending {
			t.pending--
		}
	}
	p.dropped = true
	p.entries = nil
	delete(t.parts, p.tp)
}

// inFlight is the number of handed-out records not acked yet.
func (t *offsetTracker) inFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pending
}

// failedAcks is the number of records acked with an error in the partitions
// still tracked; each blocks its partition's commits.
func (t *offsetTracker) failedAcks() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range t.parts {
		n += p.failed
	}
	return n
}

// waitIdle returns nil once every handed-out record is acked, or ctx's error.
// Polling every few milliseconds is simpler than a condition variable that
// must also watch ctx, and only runs during shutdown.
func (t *offsetTracker) waitIdle(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for t.inFlight() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
