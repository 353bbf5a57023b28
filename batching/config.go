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
	// FlushWhenIdle sends a bucket at once whenever a consumer is waiting in
	// Batcher.Next with no complete batch, and never cuts one by its delay:
	// a request server's sequence then waits only while every engine is
	// busy, and items gather meanwhile. MaxDelay then bounds how long a
	// bucket may be passed over for fuller ones (Assembler.ForIdle). Off, a
	// partly filled bucket always waits for MaxDelay (throughput first: a
	// file's batches fill up).
	FlushWhenIdle bool
	// ChunkSteps, when > 0, is the chunk length C of a model that scores
	// batches in blocks of at most MaxBatchSize·C row-steps with carried
	// state (ScheduleChunks). Buckets stay the same, but MaxPaddedSteps then
	// bounds a batch's largest block, B·min(T, C), rather than B·T: a long
	// history shares its batch with the others of its length bucket.
	ChunkSteps int
}

// Validate returns every problem at once (joined with errors.Join), so a
// misconfigured deployment is fixed in one round trip rather than one field
// per restart. Each problem wraps ErrInvalidConfig and names the field and
// the fix.
func (c Config) Validate() error {
	var errs []error
	bad := func(field string, value any, problem string) {
		errs = append(errs, &FieldError{Field: field, Value: value, Problem: problem})
	}
	if c.NumSkills <= 0 {
		bad("NumSkills", c.NumSkills, "set it to the model's num_skills (> 0)")
	}
	if c.MaxBatchSize <= 0 {
		bad("MaxBatchSize", c.MaxBatchSize, "must be at least 1, e.g. 64 (there is no unlimited batch size)")
	}
	if c.MaxDelay <= 0 {
		bad("MaxDelay", c.MaxDelay, "must be positive, e.g. 50ms (there is no unlimited wait)")
	}
	if c.MaxPaddedSteps <= 0 {
		bad("MaxPaddedSteps", c.MaxPaddedSteps, "must be positive, e.g. 32768 (the budget on batch size × padded length bounds memory)")
	}
	if c.ChunkSteps < 0 {
		bad("ChunkSteps", c.ChunkSteps, "must be 0 (no chunks) or the model's chunk length")
	}
	if g := c.BucketGrowth; g != 0 && !(g > 1 && g <= 2) { // written so NaN is rejected too
		bad("BucketGrowth", g, fmt.Sprintf("must be in (1, 2]; e.g. %v, the measured default", DefaultBucketGrowth))
	}
	// The batches hold ids, but the model turns them into the origin
	// signature's one-hot input_x of MaxPaddedSteps*2*NumSkills floats when it
	// has no predict_ids; refuse a budget whose tensor size cannot even be
	// represented rather than overflow there.
	if c.NumSkills > 0 && c.MaxPaddedSteps > 0 && c.MaxPaddedSteps > math.MaxInt32/(2*c.NumSkills) {
		bad("MaxPaddedSteps", c.MaxPaddedSteps, fmt.Sprintf("is too large for a model of %d skills (its input tensor would exceed %d elements); set it to at most %d",
			c.NumSkills, math.MaxInt32, math.MaxInt32/(2*c.NumSkills)))
	}
	return errors.Join(errs...)
}

// FieldError is one invalid field of a Config. It names the field so that a
// caller can name the setting the field came from instead (a flag, a
// variable); Problem says what is wrong in terms that fit either.
type FieldError struct {
	Field   string // Config's field name, e.g. "MaxBatchSize"
	Value   any
	Problem string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("batching: %s is %v; %s", e.Field, e.Value, e.Problem)
}

// Unwrap makes every problem match ErrInvalidConfig.
func (e *FieldError) Unwrap() error { return ErrInvalidConfig }

func (c Config) growth() float64 {
	if c.BucketGrowth == 0 {
		return DefaultBucketGrowth
	}
	return c.BucketGrowth
}
