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
	Lens   []int // each row's real steps in this chunk: Steps (a block is never padded)
	Steps  int   // c, the block's length
}

// The cost of one session run of a block of k rows × c steps, in units of
// one row-step: runOverhead + c·(stepOverhead + k). Measured on the bundled
// model's chunk signature with one intra-op thread: a step costs about 43 µs
// at 1 row and 530 µs at 64 (7.7 µs a row plus 35 µs for the step itself),
// and a run about 150 µs more (feeding and fetching tensors, the loop's setup).
const (
	stepOverhead = 35.0 / 7.7
	runOverhead  = 150.0 / 7.7
)

// ScheduleChunks cuts each row's history (seqLen[row] steps) into chunks and
// calls run with one block per session run, in order, until every step is
// scheduled; it stops at run's first error and returns it. A row's chunks
// run in order, since each needs the state the previous one left.
//
// Each block takes rows in order of the most steps left (ties: the lower
// row), so the longest history starts at once and its chain of chunks runs
// beside the others' work instead of alone after it. Of those rows it takes
// the first k (k ≤ blockRows) and runs each for c = min(chunkSteps, steps
// left of the k-th): no row of a block is ever padded, and k is chosen for
// the most real steps per unit of cost (see runOverhead). While blockRows
// rows have a whole chunk left that is a full [blockRows, chunkSteps] block;
// near the end of a batch, a long history advances by short chunks together
// with the last chunks of many shorter ones, rather than alone in full
// chunks while the others wait, or padding them to its chunk length.
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
		rows, steps, best := 1, min(chunkSteps, left(order[0])), 0.0
		for k := 1; k <= min(blockRows, len(order)); k++ {
			c := min(chunkSteps, left(order[k-1]))
			if rate := float64(k*c) / (runOverhead + float64(c)*(stepOverhead+float64(k))); rate > best {
				rows, steps, best = k, c, rate
			}
		}
		block.Rows, block.Starts, block.Lens = block.Rows[:0], block.Starts[:0], block.Lens[:0]
		block.Steps = steps
		for _, row := range order[:rows] {
			block.Rows = append(block.Rows, row)
			block.Starts = append(block.Starts, done[row])
			block.Lens = append(block.Lens, steps)
			done[row] += steps
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
