package batching

import (
	"errors"
	"slices"
)

// Block is one session run of a batch scored in chunks (Config.ChunkSteps):
// up to BlockRows rows of the batch, each advancing its carried state by its
// next chunk. Every slice is indexed by the block's row.
type Block struct {
	Rows   []int // the batch rows in this block
	Starts []int // each row's first step of this chunk, in its history
	Lens   []int // each row's real steps in this chunk, in [1, Steps]
	Steps  int   // c, the block's padded length
}

// The cost of one session run of a block of k rows × c steps, in units of
// one row-step: runOverhead + c·(stepOverhead + k). Measured on the bundled
// model's chunk signature (one session, fetching state, mastery and
// next_prob): a step costs about 82 µs plus 8.6 µs a row, and a run about
// 1 ms more (feeding and fetching tensors, setting up the loop).
const (
	stepOverhead = 82.0 / 8.6
	runOverhead  = 1000.0 / 8.6
)

// ScheduleChunks cuts each row's history (seqLen[row] steps) into chunks and
// calls run with one block per session run, in order, until every step is
// scheduled; it stops at run's first error and returns it. A row's chunks
// run in order, since each needs the state the previous one left.
//
// A block holds at most blockRows × chunkSteps row-steps, which bounds the
// memory of a run whatever the histories' lengths: k ≤ blockRows rows of up
// to blockRows·chunkSteps/k steps each (a history that has the block to
// itself runs in long chunks, not in many runs of chunkSteps).
//
// Each block takes rows in order of the most steps left (ties: the lower
// row), so the longest history starts at once and its chain of chunks runs
// beside the others' work instead of alone after it. Of those rows it takes
// the first k for c steps, a row with fewer steps left padded to c, with k
// and c chosen for the most real steps per unit of cost (see runOverhead). While blockRows rows have a whole chunk
// left that is a full [blockRows, chunkSteps] block; near the end of a batch
// a long history advances by shorter chunks together with the last chunks
// of shorter ones, rather than alone while they wait; and since rows are
// taken in order of steps left, a block's rows need about the same c.
func ScheduleChunks(seqLen []int32, blockRows, chunkSteps int, run func(Block) error) error {
	if blockRows < 1 || chunkSteps < 1 {
		return errors.New("batching: a chunk schedule needs at least one row and one step per block")
	}
	done := make([]int, len(seqLen)) // steps scheduled so far, per row
	order := make([]int, 0, len(seqLen))
	for row, n := range seqLen {
		if n > 0 {
			order = append(order, row)
		}
	}
	left := func(row int) int { return int(seqLen[row]) - done[row] }
	var block Block
	for len(order) > 0 {
		// A block changes only the rows it takes, so the order is nearly
		// sorted already; a stable sort keeps ties in row order.
		slices.SortStableFunc(order, func(a, b int) int {
			if d := left(b) - left(a); d != 0 {
				return d
			}
			return a - b
		})
		// c is one of the first k rows' next chunks: a longer one than the
		// first row's pads everyone, a shorter one than the k-th's wastes
		// none of the rows' steps but stops them early.
		rows, steps, best := 1, min(blockRows*chunkSteps, left(order[0])), 0.0
		for k := 1; k <= min(blockRows, len(order)); k++ {
			longest := blockRows * chunkSteps / k
			for j := 0; j < k; j++ {
				c := min(longest, left(order[j]))
				if j > 0 && c == min(longest, left(order[j-1])) {
					continue
				}
				real := 0
				for _, row := range order[:k] {
					real += min(c, left(row))
				}
				if rate := float64(real) / (runOverhead + float64(c)*(stepOverhead+float64(k))); rate > best {
					rows, steps, best = k, c, rate
				}
			}
		}
		block.Rows, block.Starts, block.Lens = block.Rows[:0], block.Starts[:0], block.Lens[:0]
		block.Steps = steps
		for _, row := range order[:rows] {
			n := min(steps, left(row))
			block.Rows = append(block.Rows, row)
			block.Starts = append(block.Starts, done[row])
			block.Lens = append(block.Lens, n)
			done[row] += n
		}
		if err := run(block); err != nil {
			return err
		}
		order = slices.DeleteFunc(order, func(row int) bool { return left(row) == 0 })
	}
	return nil
}

// chunkedSteps is Σ B'·c over the blocks ScheduleChunks runs for seqLen.
func chunkedSteps(seqLen []int32, blockRows, chunkSteps int) int {
	computed := 0
	_ = ScheduleChunks(seqLen, blockRows, chunkSteps, func(b Block) error {
		computed += len(b.Rows) * b.Steps
		return nil
	})
	return computed
}
