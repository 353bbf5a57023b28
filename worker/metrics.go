package worker

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the pipeline's Prometheus collectors. Counters read Progress
// directly, so nothing is counted twice.
type Metrics struct {
	batchSize     prometheus.Histogram
	realSteps     prometheus.Counter
	computedSteps prometheus.Counter
	flushes       *prometheus.CounterVec
	inference     prometheus.Histogram
}

// NewMetrics registers the collectors on reg. lag, when not nil, reports the
// consumer group's commit lag (it is called on each scrape).
func NewMetrics(reg prometheus.Registerer, progress *Progress, lag func(context.Context) (int64, error)) *Metrics {
	m := &Metrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dktscore_batch_size",
			Help: "Sequences per scored batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
		realSteps: prometheus.NewCounter(prometheus.CounterOpts{Name: "dktscore_real_steps_total",
			Help: "Interactions fed to the model."}),
		computedSteps: prometheus.NewCounter(prometheus.CounterOpts{Name: "dktscore_computed_steps_total",
			Help: "Padded steps computed (batch × max_steps); real ÷ computed is the padding efficiency."}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dktscore_batch_flushes_total",
			Help: "Batches by the reason they were flushed."}, []string{"reason"}),
		inference: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dktscore_inference_seconds",
			Help: "Session run time per batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	counter := func(name, help string, v func() int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
	}
	reg.MustRegister(m.batchSize, m.realSteps, m.computedSteps, m.flushes, m.inference,
		counter("dktscore_consumed_total", "Records read from the input.", progress.Consumed.Load),
		counter("dktscore_scored_total", "Students scored and written.", progress.Students.Load),
		counter("dktscore_dead_lettered_total", "Bad records sent to the dead-letter topic or rejects file.", progress.Rejected.Load),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dktscore_queue_depth",
			Help: "Records read and not yet written or dead-lettered."}, func() float64 { return float64(progress.InFlight()) }),
	)
	if lag != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dktscore_commit_lag",
			Help: "Records in the input not yet committed by the consumer group (-1 when the broker cannot be asked)."},
			func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				n, err := lag(ctx)
				if err != nil {
					return -1
				}
				return float64(n)
			}))
	}
	return m
}

func (m *Metrics) ObserveBatch(size, realSteps, computedSteps int, reason string, inference time.Duration) {
	m.batchSize.Observe(float64(size))
	m.realSteps.Add(float64(realSteps))
	m.computedSteps.Add(float64(computedSteps))
	m.flushes.WithLabelValues(reason).Inc()
	m.inference.Observe(inference.Seconds())
}
