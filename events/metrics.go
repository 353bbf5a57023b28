package events

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dktscore/dktscore/state"
	"github.com/dktscore/dktscore/worker"
)

// RegisterMetrics exposes the pipeline's counters and the store's; they read
// the counters where they are kept, so nothing is counted twice. lag, when
// set, is the consumer group's commit lag.
func RegisterMetrics(reg prometheus.Registerer, p *Progress, store *state.Store, lag func(context.Context) (int64, error)) {
	counter := worker.CounterFunc
	reg.MustRegister(
		counter("dktscore_consumed_total", "Event messages read from the input.", p.Consumed.Load),
		counter("dktscore_events_applied_total", "Events applied to a student's state (one result each).", p.Applied.Load),
		counter("dktscore_events_skipped_total", "Redelivered events skipped because their student's state already holds them.", p.Skipped.Load),
		counter("dktscore_dead_lettered_total", "Bad events sent to the dead-letter topic.", p.Rejected.Load),
		counter("dktscore_events_not_owned_total", "Events left to another worker because their partition was revoked before they were applied.", p.NotOwned.Load),
		counter("dktscore_state_version_resets_total", "Stored states of another model version that were not used (the student started over).", p.VersionResets.Load),
		counter("dktscore_state_restored_total", "Changelog records restored into memory on partition assignment.", func() int64 { return store.Stats().Restored }),
		counter("dktscore_state_evictions_total", "Student states evicted from memory, idle or over the bound (the changelog keeps them).", func() int64 { return store.Stats().Evictions }),
		counter("dktscore_state_fetches_total", "Evicted states read back from the changelog.", func() int64 { return store.Stats().Fetches }),
		counter("dktscore_state_fetch_errors_total", "Evicted states that could not be read back (the worker stops).", func() int64 { return store.Stats().FetchErrors }),
		counter("dktscore_step_runs_total", "Step runs of the model (one row per student per run).", p.StepRuns.Load),
		counter("dktscore_step_rows_total", "Rows over all step runs.", p.StepRows.Load),
		counter("dktscore_transactions_aborted_total", "Exactly-once polls aborted by a rebalance (their events come again).", p.Aborted.Load),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "dktscore_state_students", Help: "Student states held in memory."},
			func() float64 { return float64(store.Stats().InMemory) }),
	)
	if lag != nil {
		reg.MustRegister(worker.CommitLagGauge(lag))
	}
}
