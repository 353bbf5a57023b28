package model

import (
	"runtime"
	"sync/atomic"
)

// TensorFlow tensors live in C memory and are freed by Go finalizers, so only
// a garbage collection frees them; but the collector paces itself by the Go
// heap, which a run barely grows (under 1 KB). Between two collections the
// tensors that Predict and Step drop piled up: hundreds of MB for an event
// stream of Steps, gigabytes for big Predict batches. So both count the
// tensor bytes they drop (droppedTensors) and collect once collectEveryBytes
// have been dropped: about every 18,000 step rows of the bundled model.
// Measured: row g of dktscore bench (117,567 Steps of carried state) peak
// RSS 758 MiB without it, 473 MiB with it; row a 771 → 550 MiB; no slower
// (BENCHMARKS.md, "Memory: dead tensors").
const collectEveryBytes = 64 << 20

var droppedBytes atomic.Int64

func droppedTensors(n int64) {
	if droppedBytes.Add(n) >= collectEveryBytes {
		droppedBytes.Store(0)
		runtime.GC()
	}
}
