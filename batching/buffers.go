package batching

import (
	"math/bits"
	"sync"
)

// keepPerClass bounds the memory a pool can hold on to: at most this many idle
// buffers per power-of-two size class.
const keepPerClass = 4

// freeList recycles slices by power-of-two capacity class. It is used instead
// of sync.Pool because sync.Pool may drop entries at any GC (and randomly
// under -race), which would make buffer reuse — and the zeroing it requires —
// untestable; a bounded free list is just as cheap and deterministic.
type freeList[T any] struct {
	mu      sync.Mutex
	classes [bits.UintSize][][]T
}

// get returns a zeroed slice of length n. Reused memory is cleared here, not
// in put, because the consumer may have written into the batch's tensors
// after the batcher handed them out; clearing on the way out is the only
// point where "padding is zero" can be guaranteed.
func (f *freeList[T]) get(n int) []T {
	c := bits.Len(uint(n - 1)) // smallest class with 1<<c >= n
	f.mu.Lock()
	if l := len(f.classes[c]); l > 0 {
		buf := f.classes[c][l-1]
		f.classes[c][l-1] = nil
		f.classes[c] = f.classes[c][:l-1]
		f.mu.Unlock()
		buf = buf[:n]
		clear(buf)
		return buf
	}
	f.mu.Unlock()
	return make([]T, n, 1<<c)
}

func (f *freeList[T]) put(buf []T) {
	if cap(buf) == 0 {
		return
	}
	c := bits.Len(uint(cap(buf))) - 1 // largest class with 1<<c <= cap, so get's promise holds
	f.mu.Lock()
	if len(f.classes[c]) < keepPerClass {
		f.classes[c] = append(f.classes[c], buf[:0])
	}
	f.mu.Unlock()
}

// bufferPool holds the tensor buffers of one Assembler. Release may run on
// the consumer's goroutine while the Assembler builds the next batch, hence
// the locks.
type bufferPool struct {
	int32s freeList[int32]
	items  freeList[Item] // the Assembler's bucket lists, which become Batch.Items
}
