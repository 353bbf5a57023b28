package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/dktscore/dktscore/batching"
)

// Batching is the batch policy of every command that scores sequences
// (score, bench, serve, model-server): one declaration, so that a benchmark
// of one measures the policy the others run.
type Batching struct {
	BatchSize      int
	MaxPaddedSteps int
	MaxDelay       time.Duration
	BucketGrowth   float64

	// names are the settings' names as the declaring command's messages
	// write them (batching's field → "DKTSCORE_BATCH_SIZE (--batch-size)"),
	// kept so that CheckModel, run once the model is loaded, names them too.
	names map[string]string
}

// Defaults are the batch policy a command starts from.
type Defaults struct {
	MaxDelay     time.Duration
	BucketGrowth float64
}

// Measured is the policy chosen by one measurement of score and serve
// (BENCHMARKS.md, "Tuning"): 64 sequences, a 32,768-step budget and bucket
// growth 1.1. Commands differ in MaxDelay (a file is read faster than any
// delay, a server trades a little latency for fuller batches) and the TF
// Serving front door in growth.
var Measured = Defaults{BucketGrowth: batching.DefaultBucketGrowth}

// DeclareBatching declares the batch policy's settings, bound to b, with the
// command's defaults. The batcher's own validation judges the values (before
// the model is loaded, as for a model of one skill; CheckModel judges them
// again).
func DeclareBatching(set *Set, b *Batching, d Defaults) {
	Int(set, &b.BatchSize, Spec{Env: "BATCH_SIZE", Flag: "batch-size", Default: "64",
		Help: "most sequences per batch"})
	Int(set, &b.MaxPaddedSteps, Spec{Env: "MAX_PADDED_STEPS", Flag: "max-padded-steps", Default: "32768",
		Help: "most batch size × padded length per batch (bounds memory per model call)"})
	Duration(set, &b.MaxDelay, Spec{Env: "MAX_DELAY", Flag: "max-delay", Default: d.MaxDelay.String(),
		Help: "longest a partly filled batch waits for more sequences"})
	Float(set, &b.BucketGrowth, Spec{Env: "BUCKET_GROWTH", Flag: "bucket-growth", Default: fmt.Sprint(d.BucketGrowth),
		Help: "longest ÷ shortest sequence length allowed in one batch, in (1, 2]"}).
		Check(func(g float64) error {
			if g == 0 { // the batcher reads 0 as its default; a user names the ratio
				return fmt.Errorf("must be in (1, 2]; e.g. %v, the measured default", batching.DefaultBucketGrowth)
			}
			return nil
		})
	b.names = map[string]string{}
	for field, flag := range batchingFlags {
		b.names[field] = set.Lookup(flag).Name()
	}
	set.Check(func() error { return b.CheckModel(1) })
}

// Config is the batcher's configuration for a model of numSkills skills.
func (b Batching) Config(numSkills int) batching.Config {
	return batching.Config{NumSkills: numSkills, MaxBatchSize: b.BatchSize, MaxDelay: b.MaxDelay,
		MaxPaddedSteps: b.MaxPaddedSteps, BucketGrowth: b.BucketGrowth}
}

// batchingFlags maps the batcher's fields to the flags of their settings.
var batchingFlags = map[string]string{"MaxBatchSize": "batch-size", "MaxPaddedSteps": "max-padded-steps",
	"MaxDelay": "max-delay", "BucketGrowth": "bucket-growth"}

// CheckModel is the batcher's validation of the policy for a model of
// numSkills skills, with each problem naming the setting it came from as
// the declaring command writes it.
func (b Batching) CheckModel(numSkills int) error {
	err := b.Config(numSkills).Validate()
	if err == nil {
		return nil
	}
	var problems []error
	for _, e := range unjoin(err) {
		var field *batching.FieldError
		if errors.As(e, &field) {
			if name, ok := b.names[field.Field]; ok {
				problems = append(problems, fmt.Errorf("%s %v %s", name, field.Value, field.Problem))
				continue
			}
		}
		problems = append(problems, e)
	}
	return errors.Join(problems...)
}

// unjoin lists the errors errors.Join combined, or err alone.
func unjoin(err error) []error {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		return joined.Unwrap()
	}
	return []error{err}
}

// SessionPool is how many TensorFlow sessions score at once, and with how many
// threads each.
type SessionPool struct {
	Sessions int
	Threads  int
}

// DeclareSessions declares the session pool's settings, bound to s.
func DeclareSessions(set *Set, s *SessionPool) {
	Int(set, &s.Sessions, Spec{Env: "SESSIONS", Flag: "sessions", Default: "2",
		Help: "concurrent TensorFlow sessions (batches scored at once)"}).
		Check(AtLeast(1))
	Int(set, &s.Threads, Spec{Env: "THREADS", Flag: "threads", Default: "0",
		Help: "intra-op threads per session; 0 = cores ÷ sessions"}).Check(NotNegative[int])
}
