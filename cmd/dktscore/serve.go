package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dktscore/dktscore/batching"
	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/supervise"
	"github.com/dktscore/dktscore/worker"
)

// serveConfig is read from DKTSCORE_* environment variables; flags override.
type serveConfig struct {
	Brokers         []string      `env:"KAFKA_BROKERS" envDefault:"127.0.0.1:9092" envSeparator:","`
	InputTopic      string        `env:"KAFKA_INPUT_TOPIC" envDefault:"dkt.interactions"`
	OutputTopic     string        `env:"KAFKA_OUTPUT_TOPIC" envDefault:"dkt.mastery"`
	DeadLetterTopic string        `env:"KAFKA_DEAD_LETTER_TOPIC" envDefault:"dkt.interactions.dlq"`
	Group           string        `env:"KAFKA_GROUP" envDefault:"dktscore"`
	Delivery        string        `env:"DELIVERY" envDefault:"at-least-once"`
	TransactionalID string        `env:"KAFKA_TRANSACTIONAL_ID"`
	CreateTopics    int           `env:"CREATE_TOPICS_PARTITIONS" envDefault:"0"`
	MaxMessageBytes int           `env:"MAX_MESSAGE_BYTES" envDefault:"1000000"`
	MaxPollRecords  int           `env:"MAX_POLL_RECORDS" envDefault:"500"`
	Model           string        `env:"MODEL" envDefault:"models/dkt"`
	Sessions        int           `env:"SESSIONS" envDefault:"2"`
	Threads         int           `env:"THREADS" envDefault:"0"`
	BatchSize       int           `env:"BATCH_SIZE" envDefault:"32"`
	MaxPaddedSteps  int           `env:"MAX_PADDED_STEPS" envDefault:"32768"`
	MaxDelay        time.Duration `env:"MAX_DELAY" envDefault:"50ms"`
	BucketGrowth    float64       `env:"BUCKET_GROWTH" envDefault:"1.2"`
	MaxSteps        int           `env:"MAX_STEPS" envDefault:"0"`
	HTTPAddr        string        `env:"HTTP_ADDR" envDefault:":8080"`
	GPUs            string        `env:"GPUS" envDefault:"all"`
	GPUMemFraction  float64       `env:"GPU_MEMORY_FRACTION" envDefault:"0"`
	GPUAllowGrowth  bool          `env:"GPU_ALLOW_GROWTH"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"30s"`
	TLS             bool          `env:"KAFKA_TLS_ENABLED"`
	TLSCAFile       string        `env:"KAFKA_TLS_CA_FILE"`
	TLSCertFile     string        `env:"KAFKA_TLS_CERT_FILE"`
	TLSKeyFile      string        `env:"KAFKA_TLS_KEY_FILE"`
	TLSInsecure     bool          `env:"KAFKA_TLS_INSECURE_SKIP_VERIFY"`
	SASLMechanism   string        `env:"KAFKA_SASL_MECHANISM"`
	SASLUser        string        `env:"KAFKA_SASL_USER"`
	SASLPassword    string        `env:"KAFKA_SASL_PASSWORD"`
}

func (c *serveConfig) flags(fs *flag.FlagSet) {
	brokers := strings.Join(c.Brokers, ",")
	fs.Func("brokers", "Kafka bootstrap brokers, comma-separated (DKTSCORE_KAFKA_BROKERS, default "+brokers+")", func(v string) error {
		c.Brokers = strings.Split(v, ",")
		return nil
	})
	fs.StringVar(&c.InputTopic, "input-topic", c.InputTopic, "topic of JSON sequence records (DKTSCORE_KAFKA_INPUT_TOPIC)")
	fs.StringVar(&c.OutputTopic, "output-topic", c.OutputTopic, "topic for Arrow IPC mastery messages (DKTSCORE_KAFKA_OUTPUT_TOPIC)")
	fs.StringVar(&c.DeadLetterTopic, "dead-letter-topic", c.DeadLetterTopic, "topic for bad records (DKTSCORE_KAFKA_DEAD_LETTER_TOPIC)")
	fs.StringVar(&c.Group, "group", c.Group, "consumer group (DKTSCORE_KAFKA_GROUP)")
	fs.StringVar(&c.Delivery, "delivery", c.Delivery, "at-least-once | exactly-once (DKTSCORE_DELIVERY)")
	fs.StringVar(&c.TransactionalID, "transactional-id", c.TransactionalID, "exactly-once: unique per worker (DKTSCORE_KAFKA_TRANSACTIONAL_ID; default GROUP-HOSTNAME-PID)")
	fs.IntVar(&c.CreateTopics, "create-topics", c.CreateTopics, "create missing topics with this many partitions; 0 = never (DKTSCORE_CREATE_TOPICS_PARTITIONS)")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", c.MaxMessageBytes, "larger input messages are dead-lettered (DKTSCORE_MAX_MESSAGE_BYTES)")
	fs.IntVar(&c.MaxPollRecords, "max-poll-records", c.MaxPollRecords, "records per poll (DKTSCORE_MAX_POLL_RECORDS)")
	fs.StringVar(&c.Model, "model", c.Model, "SavedModel base or version directory (DKTSCORE_MODEL)")
	fs.IntVar(&c.Sessions, "sessions", c.Sessions, "concurrent TensorFlow sessions (DKTSCORE_SESSIONS)")
	fs.IntVar(&c.Threads, "threads", c.Threads, "intra-op threads per session, 0 = cores ÷ sessions (DKTSCORE_THREADS)")
	fs.IntVar(&c.BatchSize, "batch-size", c.BatchSize, "most sequences per batch (DKTSCORE_BATCH_SIZE)")
	fs.IntVar(&c.MaxPaddedSteps, "max-padded-steps", c.MaxPaddedSteps, "most batch×max_steps per batch (DKTSCORE_MAX_PADDED_STEPS)")
	fs.DurationVar(&c.MaxDelay, "max-delay", c.MaxDelay, "longest a partly filled batch waits (DKTSCORE_MAX_DELAY)")
	fs.Float64Var(&c.BucketGrowth, "bucket-growth", c.BucketGrowth, "longest÷shortest length in one batch (DKTSCORE_BUCKET_GROWTH)")
	fs.IntVar(&c.MaxSteps, "max-steps", c.MaxSteps, "score only the last N interactions; 0 = whole history (DKTSCORE_MAX_STEPS)")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "listen address for /healthz, /readyz, /metrics (DKTSCORE_HTTP_ADDR)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "bound on draining after SIGTERM (DKTSCORE_SHUTDOWN_TIMEOUT)")
	fs.StringVar(&c.GPUs, "gpus", c.GPUs, "all | none | 0,2: one worker process per selected GPU (DKTSCORE_GPUS)")
	fs.Float64Var(&c.GPUMemFraction, "gpu-memory-fraction", c.GPUMemFraction, "per-process GPU memory fraction in (0, 1]; 0 = TensorFlow's default (DKTSCORE_GPU_MEMORY_FRACTION)")
	fs.BoolVar(&c.GPUAllowGrowth, "gpu-allow-growth", c.GPUAllowGrowth, "allocate GPU memory on demand (DKTSCORE_GPU_ALLOW_GROWTH)")
}

func (c serveConfig) validate() error {
	var errs []error
	add := func(cond bool, format string, args ...any) {
		if cond {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	add(c.OutputTopic == "", "DKTSCORE_KAFKA_OUTPUT_TOPIC is empty; name the topic for mastery results")
	add(c.DeadLetterTopic == "", "DKTSCORE_KAFKA_DEAD_LETTER_TOPIC is empty; bad records need a topic to go to")
	add(c.InputTopic != "" && (c.InputTopic == c.OutputTopic || c.InputTopic == c.DeadLetterTopic),
		"DKTSCORE_KAFKA_INPUT_TOPIC %q is also an output topic; use distinct topics", c.InputTopic)
	add(c.Delivery != "at-least-once" && c.Delivery != "exactly-once",
		"DKTSCORE_DELIVERY %q is not at-least-once or exactly-once", c.Delivery)
	add(c.MaxMessageBytes < 1, "DKTSCORE_MAX_MESSAGE_BYTES %d must be positive", c.MaxMessageBytes)
	add(c.MaxPollRecords < 1, "DKTSCORE_MAX_POLL_RECORDS %d must be positive", c.MaxPollRecords)
	add(c.Sessions < 1, "DKTSCORE_SESSIONS %d must be at least 1", c.Sessions)
	add(c.ShutdownTimeout <= 0, "DKTSCORE_SHUTDOWN_TIMEOUT %v must be positive", c.ShutdownTimeout)
	_, _, addrErr := net.SplitHostPort(c.HTTPAddr)
	add(addrErr != nil, "DKTSCORE_HTTP_ADDR %q is not host:port; e.g. :8080", c.HTTPAddr)
	_, gpusErr := gpu.ParseSelection(c.GPUs)
	errs = append(errs, gpusErr)
	add(c.GPUMemFraction < 0 || c.GPUMemFraction > 1, "DKTSCORE_GPU_MEMORY_FRACTION %v is outside (0, 1]; 0 keeps TensorFlow's default", c.GPUMemFraction)
	errs = append(errs, c.consumer().Validate(), c.batching(0).Validate())
	return errors.Join(errs...)
}

func (c serveConfig) client() kafka.ClientConfig {
	return kafka.ClientConfig{
		Brokers:  c.Brokers,
		ClientID: "dktscore",
		TLS: kafka.TLS{Enabled: c.TLS, CAFile: c.TLSCAFile, CertFile: c.TLSCertFile, KeyFile: c.TLSKeyFile,
			InsecureSkipVerify: c.TLSInsecure},
		SASL: kafka.SASL{Mechanism: c.SASLMechanism, User: c.SASLUser, Password: c.SASLPassword},
	}
}

func (c serveConfig) consumer() kafka.ConsumerConfig {
	return kafka.ConsumerConfig{Client: c.client(), Group: c.Group, Topics: []string{c.InputTopic},
		MaxPollRecords: c.MaxPollRecords, ReadCommitted: c.Delivery == "exactly-once"}
}

// batching builds the batcher config; numSkills is 0 before the model is loaded
// (validation then checks everything else).
func (c serveConfig) batching(numSkills int) batching.Config {
	if numSkills == 0 {
		numSkills = 1
	}
	return batching.Config{NumSkills: numSkills, MaxBatchSize: c.BatchSize, MaxDelay: c.MaxDelay,
		MaxPaddedSteps: c.MaxPaddedSteps, BucketGrowth: c.BucketGrowth}
}

func serveCmd(args []string, stdout, stderr io.Writer) int {
	envOptions := env.Options{Prefix: "DKTSCORE_"}
	cfg, err := env.ParseAsWithOptions[serveConfig](envOptions)
	if err != nil {
		fmt.Fprintf(stderr, "dktscore serve: invalid environment:\n%v\n", envErrors(err, envOptions))
		return 2
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg.flags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: dktscore serve [flags]\n\nScores JSON sequence records from Kafka and publishes Arrow IPC mastery\n"+
			"messages. Configured by DKTSCORE_* environment variables; flags override.\nTLS/SASL: DKTSCORE_KAFKA_TLS_ENABLED, DKTSCORE_KAFKA_TLS_CA_FILE, DKTSCORE_KAFKA_TLS_CERT_FILE, DKTSCORE_KAFKA_TLS_KEY_FILE,\n"+
			"DKTSCORE_KAFKA_TLS_INSECURE_SKIP_VERIFY, DKTSCORE_KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512),\nDKTSCORE_KAFKA_SASL_USER, DKTSCORE_KAFKA_SASL_PASSWORD.\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "dktscore serve: invalid configuration:\n%v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	plan, err := placeWorkers(ctx, cfg, stderr)
	if err == nil {
		if len(plan) > 1 {
			err = superviseWorkers(ctx, cfg, plan, stderr)
		} else {
			err = serve(ctx, cfg, plan[0], stderr)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "dktscore serve: %v\n", err)
		return 1
	}
	return 0
}

// placeWorkers decides the worker processes: one per selected GPU, or one CPU
// worker on a host without GPUs (or with DKTSCORE_GPUS=none).
func placeWorkers(ctx context.Context, cfg serveConfig, logw io.Writer) ([]gpu.Placement, error) {
	selection, err := gpu.ParseSelection(cfg.GPUs)
	if err != nil {
		return nil, err
	}
	found, err := gpu.Discover(ctx, gpu.DiscoverOptions{})
	if err != nil {
		return nil, err
	}
	if found.CPUOnlyReason != "" && !selection.None {
		fmt.Fprintf(logw, "dktscore serve: running on CPU: %s\n", found.CPUOnlyReason)
	}
	return gpu.Plan(found.Devices, selection, cfg.GPUMemFraction, cfg.GPUAllowGrowth)
}

// superviseWorkers runs one `dktscore serve` child per placement, because
// TensorFlow's device and memory options are process-wide. Child i listens on
// the parent's HTTP port + 1 + i; the parent's endpoints report every child.
func superviseWorkers(ctx context.Context, cfg serveConfig, plan []gpu.Placement, logw io.Writer) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	host, portText, _ := net.SplitHostPort(cfg.HTTPAddr)
	port, err := strconv.Atoi(portText)
	if err != nil || port == 0 {
		return fmt.Errorf("DKTSCORE_HTTP_ADDR %q: with several GPUs it needs a fixed port (children use the next ones)", cfg.HTTPAddr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	var children []supervise.Child
	for i, p := range plan {
		addr := net.JoinHostPort(host, strconv.Itoa(port+1+i))
		env := append(os.Environ(), p.ChildEnv()...)
		children = append(children, supervise.Child{
			Name: p.Name(), Path: self, Args: []string{"serve"},
			Env:       append(env, "DKTSCORE_HTTP_ADDR="+addr),
			HealthURL: "http://" + addr + "/healthz", ReadyURL: "http://" + addr + "/readyz",
			Labels: map[string]string{"http": addr, "memory_fraction": strconv.FormatFloat(p.MemoryFraction, 'g', -1, 64)},
		})
	}
	sup, err := supervise.New(supervise.Config{Children: children, FatalExitCodes: []int{2}, Stdout: logw, Stderr: logw})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/healthz", sup.HealthHandler())
	mux.Handle("/readyz", sup.ReadyHandler())
	server := &http.Server{Addr: cfg.HTTPAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go server.ListenAndServe()
	defer server.Close()
	fmt.Fprintf(logw, "dktscore serve: supervising %d workers (%s)\n", len(children), cfg.GPUs)
	return sup.Run(ctx)
}

// envErrors rewrites the env library's errors, which name Go struct fields,
// to name the variables an operator sets.
func envErrors(err error, opts env.Options) error {
	variable := map[string]string{}
	t := reflect.TypeFor[serveConfig]()
	for i := range t.NumField() {
		variable[t.Field(i).Name] = opts.Prefix + t.Field(i).Tag.Get("env")
	}
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	var out []error
	for _, e := range agg.Errors {
		var parse env.ParseError
		if errors.As(e, &parse) {
			e = fmt.Errorf("%s: %w", variable[parse.Name], parse.Err)
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

func serve(ctx context.Context, cfg serveConfig, placement gpu.Placement, logw io.Writer) error {
	sessionConfig, err := placement.SessionConfig(gpu.SessionConfig{IntraOpThreads: gpu.ThreadsPerSession(cfg.Threads, cfg.Sessions)}).ConfigProto()
	if err != nil {
		return err
	}
	m, err := model.Load(model.Config{Path: cfg.Model, Sessions: cfg.Sessions, SessionConfig: sessionConfig})
	if err != nil {
		return err
	}
	defer m.Close()
	if cfg.CreateTopics > 0 {
		if err := kafka.EnsureTopics(ctx, cfg.client(), int32(cfg.CreateTopics), cfg.InputTopic, cfg.OutputTopic, cfg.DeadLetterTopic); err != nil {
			return err
		}
	}
	producer, err := kafka.NewProducer(cfg.client())
	if err != nil {
		return err
	}
	defer producer.Close()

	var progress worker.Progress
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pipeline := worker.Config{Batching: cfg.batching(m.NumSkills), Engines: cfg.Sessions, MaxSteps: cfg.MaxSteps}
	output := columnar.Config{NumSkills: m.NumSkills, ModelVersion: m.Name + "/" + m.Version, WithSource: true}
	decode := func(msg kafka.Message) worker.Work {
		return worker.DecodeMessage(msg, m.NumSkills, cfg.MaxMessageBytes)
	}
	sinks := func(w worker.MessageWriter) (worker.Sink, worker.RejectSink) {
		return worker.ArrowMessageSink{Writer: w, Topic: cfg.OutputTopic, Output: output, Model: m.Name},
			// A dead letter keeps the original bytes, cut to leave room for its
			// headers under the broker's default message limit.
			worker.DeadLetterSink{Writer: w, Topic: cfg.DeadLetterTopic, MaxBytes: kafka.DefaultMaxMessageBytes - 64<<10}
	}
	consumerCfg := cfg.consumer()

	// Stopping: ctx ends on SIGTERM; the pipeline stops reading, drains and
	// commits, within ShutdownTimeout.
	var run func(context.Context) error
	var ping func(context.Context) error
	var closeKafka func(context.Context) error
	if cfg.Delivery == "exactly-once" {
		id := cfg.TransactionalID
		if id == "" {
			host, _ := os.Hostname()
			id = fmt.Sprintf("%s-%s-%d", cfg.Group, host, os.Getpid())
		}
		t, err := kafka.NewTransactor(kafka.TransactConfig{Consumer: consumerCfg, TransactionalID: id})
		if err != nil {
			return err
		}
		pipeline.Observer = worker.NewMetrics(registry, &progress, nil)
		ping, closeKafka = producer.Ping, t.Close
		run = func(ctx context.Context) error {
			return worker.RunTransactions(ctx, pipeline, t, decode, modelEngine{m}, sinks, &progress)
		}
	} else {
		consumer, err := kafka.NewConsumer(consumerCfg)
		if err != nil {
			return err
		}
		pipeline.Observer = worker.NewMetrics(registry, &progress, consumer.Lag)
		ping, closeKafka = consumer.Ping, consumer.Close
		sink, rejects := sinks(producer)
		source := worker.MessageSource{Reader: consumer, NumSkills: m.NumSkills, MaxBytes: cfg.MaxMessageBytes}
		run = func(ctx context.Context) error {
			_, err := worker.Run(ctx, pipeline, source, modelEngine{m}, sink, rejects, &progress)
			return err
		}
	}

	server := &http.Server{Addr: cfg.HTTPAddr, Handler: opsHandler(registry, ping), ReadHeaderTimeout: 5 * time.Second}
	serverErr := make(chan error, 1)
	go func() { serverErr <- server.ListenAndServe() }()
	fmt.Fprintf(logw, "dktscore serve: model %s/%s (num_skills %d) on %s, %s from %s to %s, dead letters to %s, http %s\n",
		m.Name, m.Version, m.NumSkills, placement.Name(), cfg.Delivery, cfg.InputTopic, cfg.OutputTopic, cfg.DeadLetterTopic, cfg.HTTPAddr)

	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var runErr error
	select {
	case runErr = <-done:
	case err := <-serverErr:
		return fmt.Errorf("http server on %s: %w", cfg.HTTPAddr, err)
	case <-ctx.Done():
		select {
		case runErr = <-done:
		case <-time.After(cfg.ShutdownTimeout):
			return fmt.Errorf("draining took longer than %v; unacknowledged input will be redelivered after a restart",
				cfg.ShutdownTimeout)
		}
	}
	if runErr == nil || errors.Is(runErr, context.Canceled) {
		runErr = nil
	}
	shutdown, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	closeErr := closeKafka(shutdown)
	server.Shutdown(shutdown)
	fmt.Fprintf(logw, "dktscore serve: stopped after %d consumed, %d scored, %d dead-lettered\n",
		progress.Consumed.Load(), progress.Students.Load(), progress.Rejected.Load())
	return errors.Join(runErr, closeErr)
}

// opsHandler serves liveness, readiness (the model is loaded by the time the
// server starts; the broker must answer) and Prometheus metrics.
func opsHandler(registry *prometheus.Registry, ping func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ping(ctx); err != nil {
			http.Error(w, "broker unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	return mux
}
