package batching

import (
	"fmt"
	"time"
)

// FlushReason says why a batch was emitted; the worker exports one counter
// per reason, since the mix tells an operator which limit is binding.
type FlushReason int

const (
	FlushSize   FlushReason = iota // MaxBatchSize reached
	FlushBucket                    // the padded-steps budget would be exceeded by the next item (or one item alone exceeds it)
	FlushDelay                     // MaxDelay elapsed since the bucket's oldest item arrived
	FlushDrain                     // Drain or Close
	FlushIdle                      // a consumer was idle (Config.FlushWhenIdle): a bucket went to it at once

	// NumFlushReasons sizes arrays indexed by FlushReason, like Stats.Flushes.
	NumFlushReasons = iota
)

// FlushReasons lists every reason in order, for exporting one metric each.
var FlushReasons = [NumFlushReasons]FlushReason{FlushSize, FlushBucket, FlushDelay, FlushDrain, FlushIdle}

func (r FlushReason) String() string {
	switch r {
	case FlushSize:
		return "size"
	case FlushBucket:
		return "bucket"
	case FlushDelay:
		return "delay"
	case FlushDrain:
		return "drain"
	case FlushIdle:
		return "idle"
	}
	return fmt.Sprintf("FlushReason(%d)", int(r))
}

// Batch is one model call's worth of input as ids, laid out per the compact
// predict_ids signature (plus target_id for the next-step predictions). Row b
// of every tensor is Items[b]. The origin signature's one-hot input_x is not
// built here: it is 2·S floats per step where the ids are two int32s, so the
// model builds it, straight into TensorFlow's buffer, only when it has to.
type Batch struct {
	Items    []Item
	Reason   FlushReason
	Oldest   time.Time // arrival of the batch's first item; now − Oldest is the batching latency
	Steps    int       // T = max_steps: the longest sequence in this batch
	SkillID  []int32   // [B, T] row-major: skill at t for t < len; zero at padding
	Correct  []int32   // [B, T]: 1 when step t was answered correctly, else 0; zero at padding
	TargetID []int32   // [B, T]: skill at t+1 for t < len−1; zero at the last real step and at padding
	SeqLen   []int32   // [B]: real lengths
	// ChunkSteps and BlockRows are the policy's (Config.ChunkSteps,
	// MaxBatchSize) when the batch is to be scored in chunks, else zero.
	ChunkSteps, BlockRows int

	pool        *bufferPool // nil once released
	pooledItems bool        // Items came from pool (an Assembler's bucket), not from the caller (PadToLongest)
}

// Size is B, the number of sequences.
func (b *Batch) Size() int { return len(b.SeqLen) }

// RealSteps is the number of real interactions in the batch.
func (b *Batch) RealSteps() int {
	n := 0
	for _, l := range b.SeqLen {
		n += int(l)
	}
	return n
}

// ComputedSteps is the LSTM steps the model will run including padding: B·T,
// or for a batch scored in chunks Σ B'·c over its blocks (ScheduleChunks).
func (b *Batch) ComputedSteps() int {
	if b.ChunkSteps > 0 {
		return chunkedSteps(b.SeqLen, b.BlockRows, b.ChunkSteps)
	}
	return len(b.SeqLen) * b.Steps
}

// Release hands the tensor buffers back for reuse by later batches. The
// batch, its tensors and any slice taken from them must not be used
// afterwards. Releasing twice is a no-op; not releasing is safe (the buffers
// are then garbage collected), only slower.
func (b *Batch) Release() {
	if b == nil || b.pool == nil {
		return
	}
	p := b.pool
	b.pool = nil
	p.int32s.put(b.SkillID)
	p.int32s.put(b.Correct)
	p.int32s.put(b.TargetID)
	p.int32s.put(b.SeqLen)
	if b.pooledItems {
		clear(b.Items) // the pool must not keep the caller's sequences alive
		p.items.put(b.Items)
	}
	b.SkillID, b.Correct, b.TargetID, b.SeqLen, b.Items = nil, nil, nil, nil, nil
}

// PadToLongest builds one batch of items in the order given, padded to the
// longest, outside any batcher: for tools that choose the grouping themselves
// (the naive-batching benchmark row). Its buffers are not pooled.
func PadToLongest(numSkills int, items []Item) (*Batch, error) {
	if len(items) == 0 {
		return nil, fmt.Errorf("%w: no items to pad", ErrInvalidItem)
	}
	for _, it := range items {
		if err := ValidateItem(it, numSkills); err != nil {
			return nil, err
		}
	}
	return padToLongest(new(bufferPool), items, FlushDrain, time.Now()), nil
}

// padToLongest builds a batch of the given items, padding every sequence to
// the longest one. Items must have passed ValidateItem.
func padToLongest(pool *bufferPool, items []Item, reason FlushReason, oldest time.Time) *Batch {
	steps := 0
	for _, it := range items {
		steps = max(steps, len(it.Skills))
	}
	nb := len(items)
	skillID := pool.int32s.get(nb * steps)
	correct := pool.int32s.get(nb * steps)
	target := pool.int32s.get(nb * steps)
	seqLen := pool.int32s.get(nb)
	for b, it := range items {
		n := len(it.Skills)
		seqLen[b] = int32(n)
		row := b * steps
		copy(skillID[row:row+n], it.Skills)
		// [:n] keeps a Correct slice changed after Add (against Item's
		// contract) from writing into the next student's row.
		for t, c := range it.Correct[:n] {
			correct[row+t] = int32(c)
		}
		copy(target[row:row+n-1], it.Skills[1:])
	}
	return &Batch{
		Items:    items,
		Reason:   reason,
		Oldest:   oldest,
		Steps:    steps,
		SkillID:  skillID,
		Correct:  correct,
		TargetID: target,
		SeqLen:   seqLen,
		pool:     pool,
	}
}
