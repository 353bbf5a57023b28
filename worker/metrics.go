package worker

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dktscore/dktscore/batching"
	"github.com/dktscore/dktscore/io/records"
)

// Metrics are the pipeline's Prometheus collectors, all named dktscore_*.
// Record counts read Progress directly, so no record is counted twice by two
// collectors; the rest are fed by ObserveBatch, CountRejects and WatchBatcher.
//
// The counters count work done, not work committed: a redelivered record —
// at-least-once after a crash or a rebalance, exactly-once after an aborted
// transaction (sequences.RunTransactions) — is read, scored or dead-lettered, and
// counted, again. Their help says so; consumers count distinct results by
// source offset.
type Metrics struct {
	batchSize prometheus.Histogram
	flushes   *prometheus.CounterVec
	inference prometheus.Histogram
	rejects   *prometheus.CounterVec
	// Steps are kept as atomics because two series read them: the step
	// counters and the padding-efficiency gauge.
	realSteps, computedSteps atomic.Int64
	// batcher reads the running batcher's counters; nil between runs.
	batcher atomic.Pointer[func() batching.Stats]
}

// redelivered ends the help of the record counters.
const redelivered = "; a redelivered record counts again (at-least-once: after a crash or rebalance; exactly-once: after an aborted transaction, whose writes are discarded)."

// NewMetrics registers the collectors on reg. lag, when not nil, reports the
// consumer group's commit lag (it is called on each scrape). The caller keeps
// reg and may register collectors of its own beside these.
func NewMetrics(reg prometheus.Registerer, progress *Progress, lag func(context.Context) (int64, error)) *Metrics {
	m := &Metrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dktscore_batch_size",
			Help: "Sequences per scored batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dktscore_batch_flushes_total",
			Help: "Scored batches by the reason the batcher flushed them (size, bucket, delay, drain); they sum to the batches scored."},
			[]string{"reason"}),
		inference: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dktscore_inference_seconds",
			Help: "Session run time per batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		rejects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dktscore_rejects_total",
			Help: "Bad records dead-lettered, by kind of problem (the full reason is in the dead letter's dktscore-reason header)" + redelivered},
			[]string{"kind"}),
	}
	// Every known label value starts at 0 so that rate() and sums see the
	// series before the first event of its kind.
	for _, r := range batching.FlushReasons {
		m.flushes.WithLabelValues(r.String())
	}
	for _, k := range records.RejectKinds {
		m.rejects.WithLabelValues(string(k))
	}
	counter := CounterFunc
	gauge := func(name, help string, v func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, v)
	}
	reg.MustRegister(m.batchSize, m.flushes, m.inference, m.rejects,
		counter("dktscore_consumed_total", "Records read from the input (intake), good and bad"+redelivered, progress.Consumed.Load),
		counter("dktscore_scored_total", "Students scored and written to the output"+redelivered, progress.Students.Load),
		counter("dktscore_dead_lettered_total", "Bad records sent to the dead-letter topic or rejects file"+redelivered, progress.Rejected.Load),
		counter("dktscore_real_steps_total", "Interactions fed to the model.", m.realSteps.Load),
		counter("dktscore_computed_steps_total", "Padded steps computed (batch × max_steps); real ÷ computed is the padding efficiency.",
			m.computedSteps.Load),
		gauge("dktscore_padding_efficiency", "Real ÷ computed steps since start (1 = no padding); 0 before the first batch.",
			func() float64 {
				computed := m.computedSteps.Load()
				if computed == 0 {
					return 0
				}
				return float64(m.realSteps.Load()) / float64(computed)
			}),
		gauge("dktscore_in_flight", "Records read and not yet written or dead-lettered (batcher, engines and sink).",
			func() float64 { return float64(progress.InFlight()) }),
		gauge("dktscore_batcher_pending", "Sequences waiting in the batcher's length buckets for a batch to fill.",
			func() float64 {
				if stats := m.batcher.Load(); stats != nil {
					return float64((*stats)().Pending)
				}
				return 0
			}),
	)
	if lag != nil {
		reg.MustRegister(CommitLagGauge(lag))
	}
	return m
}

// CounterFunc is a Prometheus counter that reads a count kept elsewhere (an
// atomic of Progress, events.Progress or a store), so nothing is counted twice.
func CounterFunc(name, help string, v func() int64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
}

// CommitLagGauge is dktscore_commit_lag, asked of the broker at each scrape.
func CommitLagGauge(lag func(context.Context) (int64, error)) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dktscore_commit_lag",
		Help: "Records in the input not yet committed by the consumer group (-1 when the broker cannot be asked)."},
		func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, err := lag(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		})
}

// ObserveBatch implements Observer.
func (m *Metrics) ObserveBatch(size, realSteps, computedSteps int, reason string, inference time.Duration) {
	m.batchSize.Observe(float64(size))
	m.realSteps.Add(int64(realSteps))
	m.computedSteps.Add(int64(computedSteps))
	m.flushes.WithLabelValues(reason).Inc()
	m.inference.Observe(inference.Seconds())
}

// WatchBatcher points dktscore_batcher_pending at the batcher of the run that
// is starting (Run calls it when its Observer has this method).
func (m *Metrics) WatchBatcher(stats func() batching.Stats) { m.batcher.Store(&stats) }

// CountRejects wraps next so that every reject it records is counted in
// dktscore_rejects_total under its kind (RejectError.CountedKind: a reject
// whose creator left the kind unset counts as other).
func (m *Metrics) CountRejects(next RejectSink) RejectSink {
	return countingRejects{next: next, rejects: m.rejects}
}

type countingRejects struct {
	next    RejectSink
	rejects *prometheus.CounterVec
}

func (c countingRejects) Reject(ctx context.Context, w Work) error {
	if err := c.next.Reject(ctx, w); err != nil {
		return err
	}
	c.rejects.WithLabelValues(string(w.Reject.CountedKind())).Inc()
	return nil
}
