package batching

import (
	"math"
	"sort"
)

// lengthBuckets partitions sequence lengths 1, 2, 3, … into consecutive
// ranges [lo, hi] with hi ≤ lo·growth. For short lengths lo·growth < lo+1,
// so each bucket is one exact length; above that the bounds grow
// geometrically. Two sequences of the same bucket therefore never differ by
// more than the growth ratio, which is what bounds padding.
//
// Bounds are generated lazily up to the longest length seen, so there is no
// configured maximum sequence length.
type lengthBuckets struct {
	growth float64
	hi     []int // bucket i covers [hi[i-1]+1, hi[i]], with hi[-1] = 0
}

// index returns the bucket of a sequence of length n ≥ 1.
func (lb *lengthBuckets) index(n int) int {
	for len(lb.hi) == 0 || lb.hi[len(lb.hi)-1] < n {
		lb.extend()
	}
	return sort.SearchInts(lb.hi, n)
}

// bounds returns the shortest and longest length of bucket i.
func (lb *lengthBuckets) bounds(i int) (lo, hi int) {
	if i > 0 {
		lo = lb.hi[i-1] + 1
	} else {
		lo = 1
	}
	return lo, lb.hi[i]
}

func (lb *lengthBuckets) extend() {
	lo := 1
	if len(lb.hi) > 0 {
		lo = lb.hi[len(lb.hi)-1] + 1
	}
	f := float64(lo) * lb.growth
	hi := math.MaxInt
	if f < math.MaxInt64/2 {
		hi = int(f)
		// float rounding of lo·growth may round up to the next integer; step
		// back so the guarantee hi/lo ≤ growth holds exactly as tests compute it.
		for hi > lo && float64(hi)/float64(lo) > lb.growth {
			hi--
		}
		hi = max(hi, lo)
	}
	lb.hi = append(lb.hi, hi)
}
