package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dktscore/dktscore/events"
	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/state"
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
	alo := &events.ConsumerLog{Producer: producer, MaxPoll: cfg.MaxPollRecords}
	eos := &events.TransactionLog{}
	var eventLog events.Log = alo
	if cfg.Delivery == "exactly-once" {
		eventLog = eos
	}
	var progress events.Progress
	pipeline, err := events.NewPipeline(events.Config{
		ModelVersion: modelVersion, Model: m.Name, OutputTopic: cfg.OutputTopic, DeadLetterTopic: cfg.DeadLetterTopic,
		ChangelogTopic: cfg.ChangelogTopic, MaxMessageBytes: cfg.MaxMessageBytes, Engines: cfg.Sessions, Logger: log,
	}, events.ModelEngine(m), store, eventLog, &progress)
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
		if eos.Transactor, err = kafka.NewTransactor(kafka.TransactConfig{Consumer: consumerCfg, TransactionalID: cfg.transactionalID()}); err != nil {
			return err
		}
		ping, closeKafka = producer.Ping, eos.Transactor.Close
	} else {
		if alo.Consumer, err = kafka.NewConsumer(consumerCfg); err != nil {
			return err
		}
		ping, closeKafka, lag = alo.Consumer.Ping, alo.Consumer.Close, alo.Consumer.Lag
	}
	events.RegisterMetrics(registry, &progress, store, lag)
	go events.EvictIdle(ctx, store, cfg.StateIdle)

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
