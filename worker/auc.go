package worker

import "sync"

// aucBins sets the score resolution of the streaming AUC: scores are counted
// in bins of width 1/aucBins, and pairs within one bin count as ties. With 10⁵
// bins the error is far below the 4 decimals the summary prints, and memory
// stays fixed however large the input is (1.6 MB).
const aucBins = 100_000

// AUC accumulates the pooled next-step AUC: for every real step t with a next
// answer, the prediction pred_all[t, skill_{t+1}] against correct_{t+1}.
type AUC struct {
	mu       sync.Mutex
	pos, neg []uint64 // counts per score bin
	nPos     uint64
	nNeg     uint64
}

func NewAUC() *AUC {
	return &AUC{pos: make([]uint64, aucBins+1), neg: make([]uint64, aucBins+1)}
}

// Add counts one student's next-step predictions: next[t] predicts correct[t+1].
func (a *AUC) Add(next []float32, correct []int8) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for t := 0; t+1 < len(correct) && t < len(next); t++ {
		bin := int(float64(next[t])*aucBins + 0.5)
		bin = min(max(bin, 0), aucBins)
		if correct[t+1] == 1 {
			a.pos[bin]++
			a.nPos++
		} else {
			a.neg[bin]++
			a.nNeg++
		}
	}
}

// Value returns the AUC, or false when there are not both outcomes to compare.
func (a *AUC) Value() (float64, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.nPos == 0 || a.nNeg == 0 {
		return 0, false
	}
	// Mann–Whitney: for each positive, count negatives scored lower, plus half the ties.
	var wins float64
	var negBelow uint64
	for bin := range a.pos {
		wins += float64(a.pos[bin]) * (float64(negBelow) + float64(a.neg[bin])/2)
		negBelow += a.neg[bin]
	}
	return wins / (float64(a.nPos) * float64(a.nNeg)), true
}
