package serving

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dktscore/dktscore/events"
	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/lifecycle"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/state"
)

// serveEvents runs event mode: one interaction per input message, each
// student's LSTM state carried from event to event in memory and in the
// changelog topic. It runs one pinned model version: a state only means
// something to the weights that produced it, so changing the model needs a
// re-bootstrap of the changelog (score --emit-state, state load).
//
// m is the pinned version serve loaded (DKTSCORE_MODEL_VERSION or a version
// directory in DKTSCORE_MODEL; eventProblems refuses anything else), served
// until the worker stops; registry already has its version metrics.
func serveEvents(ctx context.Context, cfg Config, m *model.Model, registry *prometheus.Registry, placement gpu.Placement, log *slog.Logger) error {
	modelVersion := m.Name + "/" + m.Version

	client := cfg.Kafka
	// A wrong password or CA would otherwise show only as a worker that never
	// consumes: exit with the cause instead.
	if err := kafka.CheckAccess(ctx, client); err != nil {
		return err
	}
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
	closeChangelog := closeOnce(changelog.Close)
	defer closeChangelog(context.WithoutCancel(ctx)) // on the way out before serving; serving closes it itself
	store, err := state.NewStore(state.StoreConfig{MaxStudents: cfg.StateMaxStudents, Idle: cfg.StateIdle, Fetch: changelog})
	if err != nil {
		return err
	}
	producer, err := kafka.NewProducer(client)
	if err != nil {
		return err
	}
	closeProducer := closeOnce(producer.Close)
	defer closeProducer(context.WithoutCancel(ctx))

	// The pipeline exists before the consumer, whose rebalance callbacks
	// call it; the Kafka side is filled in below.
	alo := &events.ConsumerLog{Producer: producer, MaxPoll: cfg.MaxPollRecords}
	eos := &events.TransactionLog{}
	var eventLog events.Log = alo
	if cfg.Delivery == ExactlyOnce {
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
	p := lifecycle.Process{HTTPAddr: cfg.HTTPAddr, ShutdownTimeout: cfg.ShutdownTimeout, Pipeline: pipeline.Run,
		Background: []func(context.Context){func(ctx context.Context) { events.EvictIdle(ctx, store, cfg.StateIdle) }},
		Overdue:    "finishing the current poll took longer than %v; its events will be redelivered after a restart"}
	var ping func(context.Context) error
	var lag func(context.Context) (int64, error)
	if cfg.Delivery == ExactlyOnce {
		if eos.Transactor, err = kafka.NewTransactor(kafka.TransactConfig{Consumer: consumerCfg, TransactionalID: cfg.transactionalID()}); err != nil {
			return err
		}
		ping, p.Closers = producer.Ping, []func(context.Context) error{eos.Transactor.Close, closeProducer, closeChangelog}
	} else {
		if alo.Consumer, err = kafka.NewConsumer(consumerCfg); err != nil {
			return err
		}
		ping, lag, p.Closers = alo.Consumer.Ping, alo.Consumer.Lag, []func(context.Context) error{alo.Consumer.Close, closeProducer, closeChangelog}
	}
	p.Handler = lifecycle.OpsHandler(registry, brokerReady(ping))
	events.RegisterMetrics(registry, &progress, store, lag)

	log.Info("serving events", "model", modelVersion, "num_skills", m.NumSkills, "state_size", m.StateSize(),
		"placement", placement.Name(), "delivery", cfg.Delivery, "input_topic", cfg.InputTopic, "output_topic", cfg.OutputTopic,
		"dead_letter_topic", cfg.DeadLetterTopic, "changelog_topic", cfg.ChangelogTopic, "group", cfg.Group,
		"state_max_students", cfg.StateMaxStudents, "state_idle", cfg.StateIdle, "http", cfg.HTTPAddr)

	// Stopping: ctx ends on SIGTERM; the pipeline finishes the poll it is
	// applying (written and committed, or aborted) and returns.
	err = lifecycle.Run(ctx, p)
	log.Info("stopped", "consumed", progress.Consumed.Load(), "applied", progress.Applied.Load(),
		"skipped_already_applied", progress.Skipped.Load(), "dead_lettered", progress.Rejected.Load(),
		"states_restored", store.Stats().Restored)
	return err
}
