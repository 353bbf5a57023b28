package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dktscore/dktscore/events"
	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/state"
	"github.com/dktscore/dktscore/worker"
)

// Serve modes (DKTSCORE_MODE).
const (
	modeSequences = "sequences"
	modeEvents    = "events"
)

// eventFlags registers the event-mode flags.
func (c *serveConfig) eventFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Mode, "mode", c.Mode, "sequences (one message = a whole history) or events (one message = one interaction, state carried per student) (DKTSCORE_MODE)")
	fs.StringVar(&c.ChangelogTopic, "changelog-topic", c.ChangelogTopic, "events mode: compacted topic of per-student states, as many partitions as the input (DKTSCORE_KAFKA_CHANGELOG_TOPIC)")
	fs.IntVar(&c.StateMaxStudents, "state-max-students", c.StateMaxStudents, "events mode: most student states held in memory; idle ones are evicted first (DKTSCORE_STATE_MAX_STUDENTS)")
	fs.DurationVar(&c.StateIdle, "state-idle", c.StateIdle, "events mode: a student without events for this long is evicted from memory (DKTSCORE_STATE_IDLE)")
}

// eventProblems checks the event-mode settings (part of validate).
func (c serveConfig) eventProblems() error {
	var errs []error
	switch c.Mode {
	case modeSequences:
		return nil
	case modeEvents:
	default:
		return fmt.Errorf("DKTSCORE_MODE %q is not %s or %s", c.Mode, modeSequences, modeEvents)
	}
	if c.ChangelogTopic == "" {
		errs = append(errs, errors.New("DKTSCORE_KAFKA_CHANGELOG_TOPIC is empty; event mode keeps student states in a compacted topic, e.g. "+kafka.DefaultChangelogTopic))
	}
	for _, t := range []string{c.InputTopic, c.OutputTopic, c.DeadLetterTopic} {
		if t != "" && t == c.ChangelogTopic {
			errs = append(errs, fmt.Errorf("DKTSCORE_KAFKA_CHANGELOG_TOPIC %q is also the input, output or dead-letter topic; use a topic of its own", c.ChangelogTopic))
			break
		}
	}
	if c.StateMaxStudents < 1 {
		errs = append(errs, fmt.Errorf("DKTSCORE_STATE_MAX_STUDENTS %d must be at least 1", c.StateMaxStudents))
	}
	if c.StateIdle <= 0 {
		errs = append(errs, fmt.Errorf("DKTSCORE_STATE_IDLE %v must be positive", c.StateIdle))
	}
	if err := c.pinnedModelProblem(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// pinnedModelProblem refuses an unpinned model in event mode. A base
// directory serves its highest version at each start, so a version dropped
// there for sequence mode's hot reload would be picked up by the next
// restart of an event worker, and every student's state (valid only for the
// weights that produced it) would silently start over and be overwritten.
func (c serveConfig) pinnedModelProblem() error {
	if c.ModelVersion != "" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(c.Model, "saved_model.pb")); err == nil {
		return nil // a version directory: pinned by its path
	}
	return fmt.Errorf("event mode needs a pinned model version, and DKTSCORE_MODEL %q is a base directory whose highest version would be loaded at each start: "+
		"a new version dropped there would reset every student's state on the next restart (a state is valid only for the model version that produced it); "+
		"set DKTSCORE_MODEL_VERSION (e.g. 1) or point DKTSCORE_MODEL at a version directory (e.g. %s)",
		c.Model, filepath.Join(c.Model, "1"))
}

// serveEvents runs event mode: one interaction per input message, each
// student's LSTM state carried from event to event in memory and in the
// changelog topic. It runs one pinned model version: a state only means
// something to the weights that produced it, so changing the model needs a
// re-bootstrap of the changelog (score --emit-state, state load).
//
// m is the pinned version serve loaded (DKTSCORE_MODEL_VERSION or a version
// directory in DKTSCORE_MODEL; eventProblems refuses anything else), served
// until the worker stops; registry already has its version metrics.
func serveEvents(ctx context.Context, cfg serveConfig, m *model.Model, registry *prometheus.Registry, placement gpu.Placement, log *slog.Logger) error {
	modelVersion := m.Name + "/" + m.Version

	client := cfg.client()
	if cfg.CreateTopics > 0 {
		if err := kafka.EnsureTopics(ctx, client, int32(cfg.CreateTopics), cfg.InputTopic, cfg.OutputTopic, cfg.DeadLetterTopic); err != nil {
			return err
		}
		if err := kafka.EnsureChangelogTopic(ctx, client, cfg.ChangelogTopic, cfg.InputTopic); err != nil {
			return err
		}
	} else if err := kafka.CheckChangelogTopic(ctx, client, cfg.ChangelogTopic, cfg.InputTopic); err != nil {
		return err
	}
	changelog, err := kafka.NewChangelog(client, cfg.ChangelogTopic)
	if err != nil {
		return err
	}
	defer changelog.Close()
	store, err := state.NewStore(state.StoreConfig{MaxStudents: cfg.StateMaxStudents, Idle: cfg.StateIdle, Fetch: changelog})
	if err != nil {
		return err
	}
	producer, err := kafka.NewProducer(client)
	if err != nil {
		return err
	}
	defer producer.Close()

	// The pipeline exists before the consumer, whose rebalance callbacks
	// call it; the Kafka side is filled in below.
	alo := &consumerEventLog{producer: producer, maxPoll: cfg.MaxPollRecords}
	eos := &transactionEventLog{}
	var eventLog events.Log = alo
	if cfg.Delivery == "exactly-once" {
		eventLog = eos
	}
	var progress events.Progress
	pipeline, err := events.NewPipeline(events.Config{
		ModelVersion: modelVersion, Model: m.Name, OutputTopic: cfg.OutputTopic, DeadLetterTopic: cfg.DeadLetterTopic,
		ChangelogTopic: cfg.ChangelogTopic, MaxMessageBytes: cfg.MaxMessageBytes, Engines: cfg.Sessions, Logger: log,
	}, stepEngine{m}, store, eventLog, &progress)
	if err != nil {
		return err
	}
	consumerCfg := cfg.consumer()
	// Restore before consuming: kgo fetches a newly assigned partition only
	// after this callback returns (io/kafka/assignment.go). A changelog
	// record that cannot be decoded stops the worker with its key and offset:
	// starting that student over would overwrite its history for good.
	consumerCfg.OnAssigned = func(ctx context.Context, assigned map[string][]int32) error {
		partitions := assigned[cfg.InputTopic]
		for _, p := range partitions {
			started := time.Now()
			store.DropPartition(p) // whatever late work of an earlier ownership left
			n, err := changelog.Restore(ctx, p, func(key, value []byte, offset int64) error {
				return store.RestoreValue(p, key, value, offset)
			})
			if err != nil {
				return err
			}
			log.Info("state restored", "changelog", cfg.ChangelogTopic, "partition", p, "records", n, "took", time.Since(started))
		}
		pipeline.PartitionsAssigned(partitions)
		return nil
	}
	consumerCfg.OnRevoked = func(_ context.Context, revoked map[string][]int32) error {
		pipeline.PartitionsRevoked(revoked[cfg.InputTopic])
		return nil
	}

	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	var ping func(context.Context) error
	var closeKafka func(context.Context) error
	var lag func(context.Context) (int64, error)
	if cfg.Delivery == "exactly-once" {
		if eos.t, err = kafka.NewTransactor(kafka.TransactConfig{Consumer: consumerCfg, TransactionalID: cfg.transactionalID()}); err != nil {
			return err
		}
		ping, closeKafka = producer.Ping, eos.t.Close
	} else {
		if alo.consumer, err = kafka.NewConsumer(consumerCfg); err != nil {
			return err
		}
		ping, closeKafka, lag = alo.consumer.Ping, alo.consumer.Close, alo.consumer.Lag
	}
	registerEventMetrics(registry, &progress, store, lag)
	go evictIdle(ctx, store, cfg.StateIdle)

	log.Info("serving events", "model", modelVersion, "num_skills", m.NumSkills, "state_size", m.StateSize(),
		"placement", placement.Name(), "delivery", cfg.Delivery, "input_topic", cfg.InputTopic, "output_topic", cfg.OutputTopic,
		"dead_letter_topic", cfg.DeadLetterTopic, "changelog_topic", cfg.ChangelogTopic, "group", cfg.Group,
		"state_max_students", cfg.StateMaxStudents, "state_idle", cfg.StateIdle, "http", cfg.HTTPAddr)

	// Stopping: ctx ends on SIGTERM; the pipeline finishes the poll it is
	// applying (written and committed, or aborted) and returns.
	err = runServing(ctx, cfg, registry, ping, closeKafka, pipeline.Run,
		"finishing the current poll took longer than %v; its events will be redelivered after a restart")
	log.Info("stopped", "consumed", progress.Consumed.Load(), "applied", progress.Applied.Load(),
		"skipped_already_applied", progress.Skipped.Load(), "dead_lettered", progress.Rejected.Load(),
		"states_restored", store.Stats().Restored)
	return err
}

// evictIdle frees the memory of idle students while no events arrive (the
// store also evicts on each of its calls).
func evictIdle(ctx context.Context, store *state.Store, idle time.Duration) {
	t := time.NewTicker(max(idle/2, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			store.EvictIdle()
		}
	}
}

// stepEngine adapts the model's step signature to the event pipeline.
type stepEngine struct{ m *model.Model }

func (e stepEngine) NumSkills() int { return e.m.NumSkills }
func (e stepEngine) StateSize() int { return e.m.StateSize() }
func (e stepEngine) Step(ctx context.Context, skills, correct []int32, st, newState, mastery []float32) error {
	return e.m.Step(ctx, model.StepInputs{SkillID: skills, Correct: correct, State: st},
		model.StepOutputs{State: newState, Mastery: mastery})
}

// consumerEventLog is at-least-once event delivery: results and states are
// produced with acks=all, and an input offset is committed from its ack.
type consumerEventLog struct {
	consumer *kafka.Consumer
	producer *kafka.Producer
	maxPoll  int
}

// Poll waits for one message, then takes what the consumer has already
// fetched, up to maxPoll: Read hands out buffered records before it looks at
// its context, so a done context drains the buffer without a broker round
// trip (and stops at an empty buffer).
func (l *consumerEventLog) Poll(ctx context.Context) ([]kafka.Message, []func(error), error) {
	m, ack, err := l.consumer.Read(ctx)
	if err != nil {
		return nil, nil, err
	}
	msgs, acks := []kafka.Message{m}, []func(error){ack}
	drain, cancel := context.WithCancel(ctx)
	cancel()
	for len(msgs) < l.maxPoll {
		m, ack, err := l.consumer.Read(drain)
		if err != nil {
			break // an empty buffer; a real failure comes back from the next Poll
		}
		msgs, acks = append(msgs, m), append(acks, ack)
	}
	return msgs, acks, nil
}

// WriteResults produces the messages concurrently (the producer batches
// them) and returns once all are acknowledged.
func (l *consumerEventLog) WriteResults(ctx context.Context, msgs []kafka.Message) error {
	errs := make([]error, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Go(func() { errs[i] = l.producer.Produce(ctx, m) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (l *consumerEventLog) WriteStates(ctx context.Context, msgs []kafka.Message) ([]int64, error) {
	return l.producer.ProduceToPartitions(ctx, msgs)
}

func (*consumerEventLog) Commit(context.Context, bool) error { return nil }

// transactionEventLog is exactly-once event delivery: a poll's results,
// dead letters, states and input offsets are committed in one transaction.
type transactionEventLog struct{ t *kafka.Transactor }

func (l *transactionEventLog) Poll(ctx context.Context) ([]kafka.Message, []func(error), error) {
	msgs, err := l.t.Poll(ctx)
	return msgs, make([]func(error), len(msgs)), err
}

func (l *transactionEventLog) WriteResults(ctx context.Context, msgs []kafka.Message) error {
	for _, m := range msgs {
		if err := l.t.Produce(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

func (l *transactionEventLog) WriteStates(ctx context.Context, msgs []kafka.Message) ([]int64, error) {
	return l.t.ProduceToPartitions(ctx, msgs)
}

func (l *transactionEventLog) Commit(ctx context.Context, commit bool) error {
	return l.t.End(ctx, commit)
}

// registerEventMetrics exposes the event pipeline's counters; they read the
// counters where they are kept, so nothing is counted twice.
func registerEventMetrics(reg prometheus.Registerer, p *events.Progress, store *state.Store, lag func(context.Context) (int64, error)) {
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
