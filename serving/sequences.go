package serving

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dktscore/dktscore/engine"
	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/lifecycle"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/sequences"
	"github.com/dktscore/dktscore/worker"
)

// serveSequences runs sequence mode: a message is a student's whole history,
// scored by the batching pipeline on the current model version (reloaded as
// new versions appear).
func serveSequences(ctx context.Context, cfg Config, versions *model.Versions, registry *prometheus.Registry, placement gpu.Placement, log *slog.Logger) error {
	// Only what every version shares is read from the first one: its name and
	// num_skills (a version with other num_skills is refused).
	m := versions.Current()
	if err := cfg.Batching.CheckModel(m.NumSkills); err != nil {
		return fmt.Errorf("model %s/%s: %w", m.Name, m.Version, err)
	}
	// A wrong password or CA would otherwise show only as a worker that never
	// consumes: exit with the cause instead.
	if err := kafka.CheckAccess(ctx, cfg.Kafka); err != nil {
		return err
	}
	if cfg.CreateTopics > 0 {
		if err := kafka.EnsureTopics(ctx, cfg.Kafka, int32(cfg.CreateTopics), cfg.InputTopic, cfg.OutputTopic, cfg.DeadLetterTopic); err != nil {
			return err
		}
	}
	producer, err := kafka.NewProducer(cfg.Kafka)
	if err != nil {
		return err
	}
	var progress worker.Progress
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pipeline := worker.Config{Batching: cfg.Batching.Config(m.NumSkills), Engines: cfg.Sessions, MaxSteps: cfg.MaxSteps}
	output := columnar.Config{NumSkills: m.NumSkills, ModelVersion: m.Name + "/" + m.Version, WithSource: true}
	decode := func(msg kafka.Message) worker.Work {
		return sequences.DecodeMessage(msg, m.NumSkills, cfg.MaxMessageBytes)
	}
	var metrics *worker.Metrics // set below, before sinks is first called
	sinks := func(w sequences.MessageWriter) (worker.Sink, worker.RejectSink) {
		return sequences.ArrowMessageSink{Writer: w, Topic: cfg.OutputTopic, Output: output, Model: m.Name},
			metrics.CountRejects(loggedRejects{log: log,
				next: sequences.DeadLetterSink{Writer: w, Topic: cfg.DeadLetterTopic}})
	}
	scorer := engine.Of(versions)

	p := lifecycle.Process{HTTPAddr: cfg.HTTPAddr, ShutdownTimeout: cfg.ShutdownTimeout,
		Closers: []func(context.Context) error{producer.Close},
		Overdue: "draining took longer than %v; unacknowledged input will be redelivered after a restart"}
	if cfg.ModelPoll > 0 {
		p.Background = append(p.Background, func(ctx context.Context) { versions.Watch(ctx, cfg.ModelPoll) })
	}
	var ping func(context.Context) error
	if cfg.Delivery == ExactlyOnce {
		t, err := kafka.NewTransactor(kafka.TransactConfig{Consumer: cfg.consumer(), TransactionalID: cfg.transactionalID()})
		if err != nil {
			producer.Close(context.WithoutCancel(ctx))
			return err
		}
		metrics = worker.NewMetrics(registry, &progress, nil)
		pipeline.Observer = metrics
		ping = producer.Ping
		p.Closers = append([]func(context.Context) error{t.Close}, p.Closers...)
		p.Pipeline = func(ctx context.Context) error {
			return sequences.RunTransactions(ctx, pipeline, t, decode, scorer, sinks, &progress)
		}
	} else {
		consumer, err := kafka.NewConsumer(cfg.consumer())
		if err != nil {
			producer.Close(context.WithoutCancel(ctx))
			return err
		}
		metrics = worker.NewMetrics(registry, &progress, consumer.Lag)
		pipeline.Observer = metrics
		ping = consumer.Ping
		p.Closers = append([]func(context.Context) error{consumer.Close}, p.Closers...)
		sink, rejects := sinks(producer)
		source := sequences.MessageSource{Reader: consumer, NumSkills: m.NumSkills, MaxBytes: cfg.MaxMessageBytes}
		p.Pipeline = func(ctx context.Context) error {
			_, err := worker.Run(ctx, pipeline, source, scorer, sink, rejects, &progress)
			return err
		}
	}
	p.Handler = lifecycle.OpsHandler(registry, brokerReady(ping))

	log.Info("serving", "model", m.Name+"/"+m.Version, "num_skills", m.NumSkills, "placement", placement.Name(),
		"delivery", cfg.Delivery, "input_topic", cfg.InputTopic, "output_topic", cfg.OutputTopic,
		"dead_letter_topic", cfg.DeadLetterTopic, "group", cfg.Group, "http", cfg.HTTPAddr)
	err = lifecycle.Run(ctx, p)
	log.Info("stopped after draining", "consumed", progress.Consumed.Load(), "scored", progress.Students.Load(),
		"dead_lettered", progress.Rejected.Load())
	return err
}
