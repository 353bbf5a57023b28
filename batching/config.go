package batching

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// DefaultBucketGrowth is used when Config.BucketGrowth is 0. At 1.1 a batch
// computes at most 10% more LSTM steps than it has real interactions (3% on
// the ASSISTments test split). Narrower buckets waste less compute on padding
// but split the long tail of histories into more batches, and a batch costs
// per padded step far more in TensorFlow's loop overhead than in arithmetic:
// on the engine alone 1.05 and 1.1 are within noise of each other, but end to
// end (`score`) 1.1 with batch 64 beat batch 32 at 1.05 (50.7k vs 42.4k
// interactions/s), and 1.15–1.2 miss the 0.95 padding-efficiency goal
// (BENCHMARKS.md, "Tuning").
const DefaultBucketGrowth = 1.1

// ErrInvalidConfig is wrapped by every problem Config.Validate reports.
var ErrInvalidConfig = errors.New("batching: invalid config")

// Config is the batching policy. Every limit is required: a batcher without
// a size, delay or padded-steps limit could hold work forever or grow a
// tensor without bound, so Validate rejects zero and negative values instead
// of guessing defaults. Only BucketGrowth has a default.
type Config struct {
	NumSkills      int           // S (>0), read from the model; skill ids must lie in [0, S)
	MaxBatchSize   int           // max sequences per batch (>0)
	MaxDelay       time.Duration // a non-empty bucket is flushed at most this long after its oldest item arrived (>0)
	MaxPaddedSteps int           // budget on B*T per batch (>0); a single sequence longer than the budget forms a batch of one
	BucketGrowth   float64       // ratio between consecutive length-bucket bounds, in (1, 2]; 0 means DefaultBucketGrowth
}

// Validate returns every problem at once (joined with errors.Join), so a
// misconfigured deployment is fixed in one round trip rather than one field
// per restart. Each problem wraps ErrInvalidConfig and names the field and
// the fix.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.NumSkills <= 0 {
		bad("NumSkills is %d; set it to the model's num_skills (> 0)", c.NumSkills)
	}
	if c.MaxBatchSize <= 0 {
		bad("MaxBatchSize is %d; set the most sequences per batch (> 0), an unlimited batch size is not allowed", c.MaxBatchSize)
	}
	if c.MaxDelay <= 0 {
		bad("MaxDelay is %v; set how long a partial batch may wait (> 0, e.g. 10ms), an unlimited delay is not allowed", c.MaxDelay)
	}
	if c.MaxPaddedSteps <= 0 {
		bad("MaxPaddedSteps is %d; set the budget on batch size × padded length (> 0, e.g. 32*512), an unlimited budget is not allowed", c.MaxPaddedSteps)
	}
	if g := c.BucketGrowth; g != 0 && !(g > 1 && g <= 2) { // written so NaN is rejected too
		bad("BucketGrowth is %v; set it in (1, 2] or leave it 0 for the default %v", g, DefaultBucketGrowth)
	}
	// The batches hold ids, but the model turns them into the origin
	// signature's one-hot input_x of MaxPaddedSteps*2*NumSkills floats when it
	// has no predict_ids; refuse a budget whose tensor size cannot even be
	// represented rather than overflow there.
	if c.NumSkills > 0 && c.MaxPaddedSteps > 0 && c.MaxPaddedSteps > math.MaxInt32/(2*c.NumSkills) {
		bad("MaxPaddedSteps × 2 × NumSkills = %d × %d exceeds %d input_x elements; lower MaxPaddedSteps",
			c.MaxPaddedSteps, 2*c.NumSkills, math.MaxInt32)
	}
	return errors.Join(errs...)
}

func (c Config) growth() float64 {
	if c.BucketGrowth == 0 {
		return DefaultBucketGrowth
	}
	return c.BucketGrowth
}
