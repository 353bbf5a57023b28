// Package worker runs the scoring pipeline: source → batcher → engine pool →
// sink, with acknowledgements flowing back to the source. It knows neither
// Kafka nor TensorFlow: sources, sinks and the engine are interfaces.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dktscore/dktscore/batching"
	"github.com/dktscore/dktscore/io/records"
)

// Ack is called exactly once per unit of work: with nil when every result
// derived from it is durable in its sink (or its reject is recorded), else with
// the error that stopped it. Sources commit input positions from acks only.
type Ack func(error)

// Work is one unit a source hands out: a sequence to score, or a reject.
type Work struct {
	Seq    records.Sequence
	Reject *records.RejectError // set for a record that failed decoding or validation
	// Source is opaque to the pipeline and copied into the Result (e.g. a Kafka
	// topic/partition/offset that consumers deduplicate on).
	Source any
}

// Source hands out work; io.EOF ends a finite input.
type Source interface {
	Read(ctx context.Context) (Work, Ack, error)
}

// Engine scores a padded batch (see model.Predict for the output layout) and
// says which model version scored it: versions can change between batches.
type Engine interface {
	NumSkills() int
	Predict(ctx context.Context, b *batching.Batch, out EngineOutputs) (modelVersion string, err error)
}

// BatchPolicy is implemented by an engine that batches its own way (a model
// scored in chunks wants long histories together): Run hands it the
// configured policy before batching starts and uses the one it returns.
type BatchPolicy interface {
	BatchPolicy(batching.Config) batching.Config
}

// EngineOutputs mirrors model.Outputs: Last is B·S, Steps Σn·S (optional),
// Next Σn (optional).
type EngineOutputs struct {
	Last, Steps, Next []float32
}

// Result is one scored student.
type Result struct {
	StudentID   string
	SeqLen      int       // interactions fed to the model
	WindowStart int       // index of the first fed interaction in the full history
	Mastery     []float32 // pred_all[n-1, :]
	// ModelVersion is the "name/version" that scored this student.
	ModelVersion string
	// Trajectory (only with Config.Trajectory): the fed interactions and
	// pred_all[t, :] after each, SeqLen·S values.
	Skills     []int32
	Correct    []int8
	Trajectory []float32
	Source     any
}

// Sink makes results durable. Write is called from one goroutine and returns
// once the results are durable (or why not); only then are inputs acked.
type Sink interface {
	Write(ctx context.Context, results []Result) error
}

// RejectSink records bad input (a rejects file, a dead-letter topic).
type RejectSink interface {
	Reject(ctx context.Context, w Work) error
}

// Config tunes the pipeline.
type Config struct {
	Batching batching.Config
	// Engines is how many batches are scored concurrently (≥ 1); match it to the
	// model's session pool.
	Engines int
	// MaxSteps keeps only the last MaxSteps interactions of longer histories
	// (0 = whole history). The window is reported in Result.WindowStart.
	MaxSteps   int
	Trajectory bool
	// FailBatchOnly makes an engine error fail only the batch it happened
	// on (its items are acked with the error) instead of stopping the run.
	// For a server answering many callers, one batch the model cannot run
	// (out of device memory) must not take the others' service down; for a
	// file or a consumer group, stopping is right, since a model that fails
	// on a valid batch fails on every batch and retrying would hide it.
	FailBatchOnly bool
	// Observer, when set, is told about every scored batch (metrics).
	Observer Observer
}

// Observer receives per-batch measurements.
type Observer interface {
	ObserveBatch(size, realSteps, computedSteps int, reason string, inference time.Duration)
}

func (c Config) validate() error {
	var errs []error
	if c.Engines < 1 {
		errs = append(errs, fmt.Errorf("engines = %d; need at least 1 concurrent batch", c.Engines))
	}
	if c.MaxSteps < 0 {
		errs = append(errs, fmt.Errorf("max steps = %d; use 0 for the whole history or N > 0 to keep the last N", c.MaxSteps))
	}
	errs = append(errs, c.Batching.Validate())
	return errors.Join(errs...)
}

// Summary counts what a run did.
type Summary struct {
	Students     int64 // scored
	Interactions int64 // fed to the model (after windowing)
	Rejected     int64
	Windowed     int64 // students whose history was cut to MaxSteps
	Batches      int64
	RealSteps    int64
	Computed     int64 // padded steps computed: Σ B·T
	Flushes      map[string]int64
	Wall         time.Duration
	AUC          float64
	HasAUC       bool
}

// PaddingEfficiency is real steps ÷ computed steps (1 = no padding).
func (s Summary) PaddingEfficiency() float64 {
	if s.Computed == 0 {
		return 0
	}
	return float64(s.RealSteps) / float64(s.Computed)
}

// Progress is readable while Run is in flight; one Progress may span many Runs.
type Progress struct {
	Consumed                         atomic.Int64 // units of work read from the source
	Students, Interactions, Rejected atomic.Int64
}

// InFlight is work read but not yet written or rejected.
func (p *Progress) InFlight() int64 {
	return p.Consumed.Load() - p.Students.Load() - p.Rejected.Load()
}

// pending ties a batch row back to its work and ack.
type pending struct {
	work        Work
	ack         Ack
	windowStart int
	skills      []int32
	correct     []int8
}

// Run scores everything src hands out until io.EOF, ctx is cancelled, or a
// fatal error. On EOF or cancellation it drains: queued sequences are still
// scored, written and acked. Work that cannot be completed is acked with the error.
func Run(ctx context.Context, cfg Config, src Source, engine Engine, sink Sink, rejects RejectSink, progress *Progress) (Summary, error) {
	started := time.Now()
	if p, ok := engine.(BatchPolicy); ok {
		cfg.Batching = p.BatchPolicy(cfg.Batching)
	}
	if err := cfg.validate(); err != nil {
		return Summary{}, err
	}
	if progress == nil {
		progress = new(Progress)
	}
	batcher, err := batching.New(cfg.Batching)
	if err != nil {
		return Summary{}, err
	}
	if w, ok := cfg.Observer.(interface{ WatchBatcher(func() batching.Stats) }); ok {
		w.WatchBatcher(batcher.Stats) // queue depth for metrics
	}
	p := &pipeline{cfg: cfg, engine: engine, sink: sink, rejects: rejects, progress: progress,
		auc: NewAUC(), scored: make(chan scoredBatch, cfg.Engines)}

	// Two contexts: ctx ending means "stop fetching, finish what is queued"
	// (graceful shutdown); abortCtx ending means a fatal error, and every stage
	// stops scoring and writing, acking what it holds with the error.
	//
	// Event order: read() feeds the batcher until EOF or stop, then closes it,
	// which flushes every bucket with reason "drain". The engines range over
	// the batcher (Next) until it closes — after an abort they still drain it, acking
	// instead of scoring, so no item is left without an ack. When all engines
	// return, scored closes and write() returns.
	abortCtx, abort := context.WithCancelCause(context.WithoutCancel(ctx))
	defer abort(nil)
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	context.AfterFunc(abortCtx, stopReading)

	var reader sync.WaitGroup
	reader.Add(1)
	go func() {
		defer reader.Done()
		defer batcher.Close(context.WithoutCancel(ctx))
		if err := p.read(readCtx, abortCtx, src, batcher); err != nil {
			abort(err)
		}
	}()
	var engines sync.WaitGroup
	for range cfg.Engines {
		engines.Add(1)
		go func() {
			defer engines.Done()
			p.score(abortCtx, abort, batcher)
		}()
	}
	go func() { engines.Wait(); close(p.scored) }()
	p.write(abortCtx, abort)
	reader.Wait()

	stats := batcher.Stats()
	sum := Summary{
		Students: progress.Students.Load(), Interactions: progress.Interactions.Load(),
		Rejected: progress.Rejected.Load(), Windowed: p.windowed.Load(),
		Batches: int64(stats.Batches), RealSteps: int64(stats.RealSteps), Computed: int64(stats.ComputedSteps),
		Flushes: map[string]int64{}, Wall: time.Since(started),
	}
	for _, r := range batching.FlushReasons {
		sum.Flushes[r.String()] = int64(stats.Flushes[r])
	}
	sum.AUC, sum.HasAUC = p.auc.Value()
	if abortCtx.Err() != nil {
		return sum, context.Cause(abortCtx)
	}
	return sum, ctx.Err()
}

type pipeline struct {
	cfg      Config
	engine   Engine
	sink     Sink
	rejects  RejectSink
	progress *Progress
	auc      *AUC
	windowed atomic.Int64
	scored   chan scoredBatch
}

type scoredBatch struct {
	results []Result
	acks    []Ack
}

// read feeds the batcher until the source ends or ctx (stop) ends. Rejects are
// recorded under abortCtx: a stop must not fail the dead letter of a record
// that was already read.
func (p *pipeline) read(ctx, abortCtx context.Context, src Source, batcher *batching.Batcher) error {
	for ctx.Err() == nil {
		w, ack, err := src.Read(ctx)
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if ack == nil {
			ack = func(error) {}
		}
		p.progress.Consumed.Add(1)
		if w.Reject != nil {
			if err := p.rejects.Reject(abortCtx, w); err != nil {
				ack(err)
				return fmt.Errorf("recording reject: %w", err)
			}
			p.progress.Rejected.Add(1)
			ack(nil)
			continue
		}
		item := &pending{work: w, ack: ack, skills: w.Seq.Skills, correct: w.Seq.Correct}
		if n := len(item.skills); p.cfg.MaxSteps > 0 && n > p.cfg.MaxSteps {
			item.windowStart = n - p.cfg.MaxSteps
			item.skills = item.skills[item.windowStart:]
			item.correct = item.correct[item.windowStart:]
			p.windowed.Add(1)
		}
		// Once read, an item is queued even if a stop arrives meanwhile: the
		// drain scores it. Only an abort turns it away.
		if err := batcher.Add(abortCtx, batching.Item{Skills: item.skills, Correct: item.correct, Ref: item}); err != nil {
			ack(err)
			if abortCtx.Err() != nil {
				return nil
			}
			// No student id: serve logs this error, and logs carry no payload data.
			return fmt.Errorf("queueing a sequence of %d interactions: %w", len(item.skills), err)
		}
	}
	return nil
}

// score runs batches until the batcher closes. After an abort it keeps
// draining, acking instead of scoring, so that every queued item gets its ack.
func (p *pipeline) score(ctx context.Context, abort context.CancelCauseFunc, batcher *batching.Batcher) {
	s := p.engine.NumSkills()
	for {
		b, ok := batcher.Next()
		if !ok {
			return
		}
		if ctx.Err() != nil {
			ackAll(b, context.Cause(ctx))
			b.Release()
			continue
		}
		out, err := p.scoreBatch(ctx, b, s)
		b.Release()
		if err != nil && p.cfg.FailBatchOnly {
			continue // scoreBatch acked the batch's items with the error
		}
		if err != nil {
			abort(err)
			continue
		}
		p.scored <- out // write() reads until scored closes, even after an abort
	}
}

func ackAll(b *batching.Batch, err error) {
	for _, it := range b.Items {
		it.Ref.(*pending).ack(err)
	}
}

func (p *pipeline) scoreBatch(ctx context.Context, b *batching.Batch, s int) (scoredBatch, error) {
	real := b.RealSteps()
	out := EngineOutputs{Last: make([]float32, len(b.Items)*s), Next: make([]float32, real)}
	if p.cfg.Trajectory {
		out.Steps = make([]float32, real*s)
	}
	// Engine errors stop the run unless FailBatchOnly (see Config).
	started := time.Now()
	version, err := p.engine.Predict(ctx, b, out)
	if err != nil {
		ackAll(b, err)
		return scoredBatch{}, fmt.Errorf("scoring a batch of %d students: %w", len(b.Items), err)
	}
	if p.cfg.Observer != nil {
		p.cfg.Observer.ObserveBatch(len(b.Items), real, b.ComputedSteps(), b.Reason.String(), time.Since(started))
	}
	acks := make([]Ack, len(b.Items))
	results := make([]Result, len(b.Items))
	row := 0
	for i, it := range b.Items {
		item := it.Ref.(*pending)
		acks[i] = item.ack
		n := len(item.skills)
		results[i] = Result{
			StudentID: item.work.Seq.StudentID, SeqLen: n, WindowStart: item.windowStart,
			Mastery: out.Last[i*s : (i+1)*s], ModelVersion: version, Source: item.work.Source,
		}
		if p.cfg.Trajectory {
			results[i].Skills, results[i].Correct = item.skills, item.correct
			results[i].Trajectory = out.Steps[row*s : (row+n)*s]
		}
		p.auc.Add(out.Next[row:row+n], item.correct)
		row += n
	}
	return scoredBatch{results: results, acks: acks}, nil
}

// write hands results to the sink until the engines are done. A failed write
// aborts the run at once — otherwise an endless source would keep being read
// and nacked — and everything still arriving is acked with the error.
func (p *pipeline) write(ctx context.Context, abort context.CancelCauseFunc) {
	var failed error
	for batch := range p.scored {
		if failed == nil {
			failed = context.Cause(ctx) // an abort elsewhere: write nothing more
		}
		if failed == nil {
			if err := p.sink.Write(ctx, batch.results); err != nil {
				failed = fmt.Errorf("writing results: %w", err)
				abort(failed)
			}
		}
		for _, ack := range batch.acks {
			ack(failed)
		}
		if failed != nil {
			continue // keep draining so the engines are not blocked
		}
		p.progress.Students.Add(int64(len(batch.results)))
		for _, r := range batch.results {
			p.progress.Interactions.Add(int64(r.SeqLen))
		}
	}
}
