package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dktscore/dktscore/batching"
	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/sequences"
	"github.com/dktscore/dktscore/supervise"
	"github.com/dktscore/dktscore/worker"
)

// serveConfig is read from DKTSCORE_* environment variables; flags override.
// Every field needs a help tag: `serve --help` lists the variables from these
// tags (config_help.go), and a test fails for a field without one.
type serveConfig struct {
	Brokers         []string      `env:"KAFKA_BROKERS" envDefault:"127.0.0.1:9092" envSeparator:"," help:"Kafka bootstrap brokers, host:port, comma-separated"`
	InputTopic      string        `env:"KAFKA_INPUT_TOPIC" envDefault:"dkt.interactions" help:"topic of JSON records to score: whole histories (sequences mode) or one interaction each (events mode)"`
	OutputTopic     string        `env:"KAFKA_OUTPUT_TOPIC" envDefault:"dkt.mastery" help:"topic for Arrow IPC mastery messages"`
	DeadLetterTopic string        `env:"KAFKA_DEAD_LETTER_TOPIC" envDefault:"dkt.interactions.dlq" help:"topic for bad records, with the reason in header dktscore-reason"`
	Group           string        `env:"KAFKA_GROUP" envDefault:"dktscore" help:"Kafka consumer group; workers of one group share the input partitions"`
	Delivery        string        `env:"DELIVERY" envDefault:"at-least-once" help:"at-least-once (commit after the results are acknowledged) or exactly-once (Kafka transactions)"`
	TransactionalID string        `env:"KAFKA_TRANSACTIONAL_ID" help:"exactly-once only: producer id, stable per worker and unique among workers; unset = GROUP-HOSTNAME-PID; with several GPUs each worker gets ID-<worker name> (ID-gpu0, ...)"`
	CreateTopics    int           `env:"CREATE_TOPICS_PARTITIONS" envDefault:"0" help:"create missing topics with this many partitions at start; 0 = never"`
	MaxMessageBytes int           `env:"MAX_MESSAGE_BYTES" envDefault:"1000000" help:"input messages larger than this are dead-lettered undecoded"`
	MaxPollRecords  int           `env:"MAX_POLL_RECORDS" envDefault:"500" help:"most records fetched per poll"`
	Model           string        `env:"MODEL" envDefault:"models/dkt" help:"SavedModel base directory in TF Serving's NAME/VERSION layout, or one version directory"`
	ModelVersion    string        `env:"MODEL_VERSION" help:"serve only this version of DKTSCORE_MODEL (a non-negative integer, the version directory's name); unset = the highest"`
	ModelPoll       time.Duration `env:"MODEL_POLL_INTERVAL" envDefault:"10s" help:"how often DKTSCORE_MODEL is checked for new versions; 0 = never (sequence mode: event mode serves the version it started with)"`
	Sessions        int           `env:"SESSIONS" envDefault:"2" help:"concurrent TensorFlow sessions (batches scored at once)"`
	Threads         int           `env:"THREADS" envDefault:"0" help:"intra-op threads per session; 0 = cores ÷ sessions"`
	BatchSize       int           `env:"BATCH_SIZE" envDefault:"64" help:"most sequences per batch"`
	MaxPaddedSteps  int           `env:"MAX_PADDED_STEPS" envDefault:"32768" help:"most batch × max_steps per batch (bounds memory per model call)"`
	MaxDelay        time.Duration `env:"MAX_DELAY" envDefault:"50ms" help:"longest a partly filled batch waits for more sequences"`
	BucketGrowth    float64       `env:"BUCKET_GROWTH" envDefault:"1.1" help:"longest ÷ shortest sequence length allowed in one batch, in (1, 2]"`
	MaxSteps        int           `env:"MAX_STEPS" envDefault:"0" help:"score only the last N interactions of longer histories; 0 = whole history"`
	HTTPAddr        string        `env:"HTTP_ADDR" envDefault:":8080" help:"listen address for /healthz, /readyz and /metrics"`
	GPUs            string        `env:"GPUS" envDefault:"all" help:"all, none, or GPU indices like 0,2: one worker process per selected GPU"`
	GPUMemFraction  float64       `env:"GPU_MEMORY_FRACTION" envDefault:"0" help:"per-process GPU memory fraction in (0, 1]; 0 = TensorFlow's default"`
	GPUAllowGrowth  bool          `env:"GPU_ALLOW_GROWTH" help:"allocate GPU memory on demand instead of up front"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"30s" help:"bound on draining in-flight batches after SIGTERM"`
	TLS             bool          `env:"KAFKA_TLS_ENABLED" help:"connect to the brokers over TLS"`
	TLSCAFile       string        `env:"KAFKA_TLS_CA_FILE" help:"PEM CA bundle that signed the brokers' certificates; unset = system roots"`
	TLSCertFile     string        `env:"KAFKA_TLS_CERT_FILE" help:"PEM client certificate for mTLS (with DKTSCORE_KAFKA_TLS_KEY_FILE)"`
	TLSKeyFile      string        `env:"KAFKA_TLS_KEY_FILE" help:"PEM client key for mTLS (with DKTSCORE_KAFKA_TLS_CERT_FILE)"`
	TLSInsecure     bool          `env:"KAFKA_TLS_INSECURE_SKIP_VERIFY" help:"skip verifying the brokers' certificates (test brokers only)"`
	SASLMechanism   string        `env:"KAFKA_SASL_MECHANISM" help:"PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; unset = no SASL"`
	SASLUser        string        `env:"KAFKA_SASL_USER" help:"SASL user name"`
	SASLPassword    string        `env:"KAFKA_SASL_PASSWORD" help:"SASL password"`
	LogFormat       string        `env:"LOG_FORMAT" envDefault:"text" help:"log format on stderr: text (key=value) or json (one object per line)"`
	LogLevel        string        `env:"LOG_LEVEL" envDefault:"info" help:"least severe log level written: debug, info, warn or error"`
	// Event mode (events.go).
	Mode             string        `env:"MODE" envDefault:"sequences" help:"sequences (a message is a whole history) or events (a message is one interaction; per-student state is carried)"`
	ChangelogTopic   string        `env:"KAFKA_CHANGELOG_TOPIC" envDefault:"dkt.state" help:"events mode: compacted topic of per-student states, with as many partitions as the input topic"`
	StateMaxStudents int           `env:"STATE_MAX_STUDENTS" envDefault:"100000" help:"events mode: most student states held in memory (about 1.6 KB each for the bundled model)"`
	StateIdle        time.Duration `env:"STATE_IDLE" envDefault:"10m" help:"events mode: a student without events for this long is evicted from memory (the changelog keeps it)"`
	// Set by the supervisor, not by operators: a child skips the warnings its
	// parent already gave about the same environment.
	SupervisedWorker string `env:"SUPERVISED_WORKER" help:"set by serve itself for each worker process it supervises (the worker's name, e.g. gpu0); leave it unset"`
}

func (c *serveConfig) flags(fs *flag.FlagSet) {
	brokers := strings.Join(c.Brokers, ",")
	fs.Func("brokers", "Kafka bootstrap brokers, comma-separated (DKTSCORE_KAFKA_BROKERS, default "+brokers+")", func(v string) error {
		c.Brokers = strings.Split(v, ",")
		return nil
	})
	fs.StringVar(&c.InputTopic, "input-topic", c.InputTopic, "topic of JSON records: histories, or single interactions with --mode events (DKTSCORE_KAFKA_INPUT_TOPIC)")
	fs.StringVar(&c.OutputTopic, "output-topic", c.OutputTopic, "topic for Arrow IPC mastery messages (DKTSCORE_KAFKA_OUTPUT_TOPIC)")
	fs.StringVar(&c.DeadLetterTopic, "dead-letter-topic", c.DeadLetterTopic, "topic for bad records (DKTSCORE_KAFKA_DEAD_LETTER_TOPIC)")
	fs.StringVar(&c.Group, "group", c.Group, "consumer group (DKTSCORE_KAFKA_GROUP)")
	fs.StringVar(&c.Delivery, "delivery", c.Delivery, "at-least-once | exactly-once (DKTSCORE_DELIVERY)")
	fs.StringVar(&c.TransactionalID, "transactional-id", c.TransactionalID, "exactly-once: unique per worker; with several GPUs each worker gets ID-<worker name> (DKTSCORE_KAFKA_TRANSACTIONAL_ID; default GROUP-HOSTNAME-PID)")
	fs.IntVar(&c.CreateTopics, "create-topics", c.CreateTopics, "create missing topics with this many partitions; 0 = never (DKTSCORE_CREATE_TOPICS_PARTITIONS)")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", c.MaxMessageBytes, "larger input messages are dead-lettered (DKTSCORE_MAX_MESSAGE_BYTES)")
	fs.IntVar(&c.MaxPollRecords, "max-poll-records", c.MaxPollRecords, "records per poll (DKTSCORE_MAX_POLL_RECORDS)")
	fs.StringVar(&c.Model, "model", c.Model, "SavedModel base directory in NAME/VERSION layout; the highest version is served and newer ones are loaded as they appear (DKTSCORE_MODEL)")
	fs.StringVar(&c.ModelVersion, "model-version", c.ModelVersion, "serve only this version of --model, a non-negative integer; empty = the highest (DKTSCORE_MODEL_VERSION)")
	fs.DurationVar(&c.ModelPoll, "model-poll-interval", c.ModelPoll, "how often --model is checked for new versions; 0 = never (DKTSCORE_MODEL_POLL_INTERVAL)")
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
	c.eventFlags(fs)
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
	if c.ModelVersion != "" {
		v, err := strconv.ParseInt(c.ModelVersion, 10, 64)
		add(err != nil || v < 0, "DKTSCORE_MODEL_VERSION %q is not a version number; name a version directory of DKTSCORE_MODEL (a non-negative integer, e.g. 1) or leave it unset to serve the highest",
			c.ModelVersion)
	}
	add(c.ModelPoll < 0, "DKTSCORE_MODEL_POLL_INTERVAL %v is negative; use 0 to never look for new versions", c.ModelPoll)
	add(c.ShutdownTimeout <= 0, "DKTSCORE_SHUTDOWN_TIMEOUT %v must be positive", c.ShutdownTimeout)
	_, _, addrErr := net.SplitHostPort(c.HTTPAddr)
	add(addrErr != nil, "DKTSCORE_HTTP_ADDR %q is not host:port; e.g. :8080", c.HTTPAddr)
	_, gpusErr := gpu.ParseSelection(c.GPUs)
	errs = append(errs, gpusErr)
	add(c.GPUMemFraction < 0 || c.GPUMemFraction > 1, "DKTSCORE_GPU_MEMORY_FRACTION %v is outside (0, 1]; 0 keeps TensorFlow's default", c.GPUMemFraction)
	errs = append(errs, c.consumer().Validate(), c.batchingProblems(1))
	errs = append(errs, c.eventProblems())
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

// batching builds the batcher config; batchingProblems has checked it.
func (c serveConfig) batching(numSkills int) batching.Config {
	return batching.Config{NumSkills: numSkills, MaxBatchSize: c.BatchSize, MaxDelay: c.MaxDelay,
		MaxPaddedSteps: c.MaxPaddedSteps, BucketGrowth: c.BucketGrowth}
}

// batchingProblems checks the batching settings as batching.Config.Validate
// does, in the operator's terms: batching's own messages name Go fields
// (MaxBatchSize) and a zero BucketGrowth that serve never passes. numSkills
// is 1 before the model is loaded and the model's num_skills after, when the
// padded-steps budget is checked again against the real input_x size.
func (c serveConfig) batchingProblems(numSkills int) error {
	var errs []error
	add := func(cond bool, format string, args ...any) {
		if cond {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	add(c.BatchSize < 1, "DKTSCORE_BATCH_SIZE (--batch-size) %d must be at least 1; set the most sequences per batch, e.g. 64", c.BatchSize)
	add(c.MaxDelay <= 0, "DKTSCORE_MAX_DELAY (--max-delay) %v must be positive; set how long a partly filled batch may wait, e.g. 50ms", c.MaxDelay)
	add(c.MaxPaddedSteps < 1, "DKTSCORE_MAX_PADDED_STEPS (--max-padded-steps) %d must be positive; set the budget on batch size × padded length, e.g. 32768", c.MaxPaddedSteps)
	// The budget becomes a one-hot input_x of MaxPaddedSteps × 2 × num_skills
	// floats when the model has no predict_ids signature.
	if limit := math.MaxInt32 / (2 * numSkills); c.MaxPaddedSteps > limit {
		add(true, "DKTSCORE_MAX_PADDED_STEPS (--max-padded-steps) %d is too large for a model of %d skills (its input tensor would exceed %d elements); set it to at most %d",
			c.MaxPaddedSteps, numSkills, math.MaxInt32, limit)
	}
	g := c.BucketGrowth
	add(!(g > 1 && g <= 2), "DKTSCORE_BUCKET_GROWTH (--bucket-growth) %v must be in (1, 2]; e.g. 1.1, the measured default", g) // written so NaN is rejected too
	if len(errs) == 0 {
		// Anything batching checks that the lines above do not.
		if err := c.batching(numSkills).Validate(); err != nil {
			errs = append(errs, fmt.Errorf("DKTSCORE_BATCH_SIZE, DKTSCORE_MAX_DELAY, DKTSCORE_MAX_PADDED_STEPS or DKTSCORE_BUCKET_GROWTH: %w", err))
		}
	}
	return errors.Join(errs...)
}

func serveCmd(args []string, stdout, stderr io.Writer) int {
	cfg, unknown, code, done := configureServe(args, os.Environ(), stdout, stderr)
	if done {
		return code
	}
	log, err := newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil { // configureServe has validated both; kept for safety
		fmt.Fprintf(stderr, "dktscore serve: %v\n", err)
		return 2
	}
	slog.SetDefault(log) // the Kafka client, the supervisor and the model reloads log through it
	// unknown is empty in a supervised child: its parent warned already.
	for _, u := range unknown {
		log.Warn("environment variable is not read by dktscore serve", "variable", u.Name, "did_you_mean", u.Suggestion)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	plan, err := placeWorkers(ctx, cfg, log)
	if err == nil {
		if len(plan) > 1 {
			err = superviseWorkers(ctx, cfg, plan, log, stderr)
		} else {
			err = serve(ctx, cfg, plan[0], log)
		}
	}
	if err != nil {
		log.Error("dktscore serve failed", "error", err)
		return 1
	}
	return 0
}

// placeWorkers decides the worker processes: one per selected GPU, or one CPU
// worker on a host without GPUs (or with DKTSCORE_GPUS=none).
func placeWorkers(ctx context.Context, cfg serveConfig, log *slog.Logger) ([]gpu.Placement, error) {
	selection, err := gpu.ParseSelection(cfg.GPUs)
	if err != nil {
		return nil, err
	}
	found, err := gpu.Discover(ctx, gpu.DiscoverOptions{})
	if err != nil {
		return nil, err
	}
	if found.CPUOnlyReason != "" && !selection.None {
		log.Warn("running on CPU", "reason", found.CPUOnlyReason)
	}
	return gpu.Plan(found.Devices, selection, cfg.GPUMemFraction, cfg.GPUAllowGrowth)
}

// superviseWorkers runs one `dktscore serve` child per placement, because
// TensorFlow's device and memory options are process-wide. Child i listens on
// the parent's HTTP port + 1 + i; the parent's endpoints report every child.
func superviseWorkers(ctx context.Context, cfg serveConfig, plan []gpu.Placement, log *slog.Logger, logw io.Writer) error {
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
		children = append(children, supervise.Child{
			Name: p.Name(), Path: self, Args: []string{"serve"},
			Env:       childEnv(os.Environ(), cfg, p, addr),
			HealthURL: "http://" + addr + "/healthz", ReadyURL: "http://" + addr + "/readyz",
			Labels: map[string]string{"http": addr, "memory_fraction": strconv.FormatFloat(p.MemoryFraction, 'g', -1, 64)},
		})
	}
	sup, err := supervise.New(supervise.Config{Children: children, FatalExitCodes: []int{2}, Stdout: logw, Stderr: logw, Logger: log})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/healthz", sup.HealthHandler())
	mux.Handle("/readyz", sup.ReadyHandler())
	metricsURLs := map[string]string{}
	for _, c := range children {
		metricsURLs[c.Name] = strings.TrimSuffix(c.HealthURL, "/healthz") + "/metrics"
	}
	mux.Handle("/metrics", promhttp.HandlerFor(newChildMetrics(metricsURLs), promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	server := &http.Server{Addr: cfg.HTTPAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go server.ListenAndServe()
	defer server.Close()
	log.Info("supervising workers", "workers", len(children), "gpus", cfg.GPUs)
	return sup.Run(ctx)
}

// childEnv is the environment of the supervised worker for placement p,
// listening on addr. Later entries win (exec.Cmd keeps the last of a name):
// the parent's resolved config over its environment, then what differs per
// child — its device, its port, its name, and its transactional id: children
// sharing one id would fence each other's transactions forever, so a set id
// becomes ID-<worker name>. An unset id stays unset: each child derives
// GROUP-HOSTNAME-PID from its own pid.
func childEnv(parent []string, cfg serveConfig, p gpu.Placement, addr string) []string {
	env := append(append(slices.Clip(parent), cfg.environ()...), p.ChildEnv()...)
	env = append(env, "DKTSCORE_HTTP_ADDR="+addr, "DKTSCORE_SUPERVISED_WORKER="+p.Name())
	if cfg.TransactionalID != "" {
		env = append(env, "DKTSCORE_KAFKA_TRANSACTIONAL_ID="+cfg.TransactionalID+"-"+p.Name())
	}
	return env
}

func serve(ctx context.Context, cfg serveConfig, placement gpu.Placement, log *slog.Logger) error {
	sessionConfig, err := placement.SessionConfig(gpu.SessionConfig{IntraOpThreads: gpu.ThreadsPerSession(cfg.Threads, cfg.Sessions)}).ConfigProto()
	if err != nil {
		return err
	}
	registry := prometheus.NewRegistry()
	versions, err := openVersions(cfg, model.Config{Sessions: cfg.Sessions, SessionConfig: sessionConfig}, registry)
	if err != nil {
		return err
	}
	defer versions.Close()
	if cfg.Mode == modeEvents {
		// Event mode never polls: its version is pinned (eventProblems).
		return serveEvents(ctx, cfg, versions.Current(), registry, placement, log)
	}
	// Only what every version shares is read from the first one: its name and
	// num_skills (a version with other num_skills is refused).
	m := versions.Current()
	if err := cfg.batchingProblems(m.NumSkills); err != nil {
		return fmt.Errorf("model %s/%s: %w", m.Name, m.Version, err)
	}
	if cfg.ModelPoll > 0 {
		go versions.Watch(ctx, cfg.ModelPoll)
	}
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
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	pipeline := worker.Config{Batching: cfg.batching(m.NumSkills), Engines: cfg.Sessions, MaxSteps: cfg.MaxSteps}
	output := columnar.Config{NumSkills: m.NumSkills, ModelVersion: m.Name + "/" + m.Version, WithSource: true}
	decode := func(msg kafka.Message) worker.Work {
		return sequences.DecodeMessage(msg, m.NumSkills, cfg.MaxMessageBytes)
	}
	var metrics *worker.Metrics // set below, before sinks is first called
	sinks := func(w sequences.MessageWriter) (worker.Sink, worker.RejectSink) {
		return sequences.ArrowMessageSink{Writer: w, Topic: cfg.OutputTopic, Output: output, Model: m.Name},
			// A dead letter keeps the original bytes, cut to leave room for its
			// headers under the broker's default message limit.
			metrics.CountRejects(loggedRejects{log: log,
				next: sequences.DeadLetterSink{Writer: w, Topic: cfg.DeadLetterTopic}})
	}
	consumerCfg := cfg.consumer()

	// Stopping: ctx ends on SIGTERM; the pipeline stops reading, drains and
	// commits, within ShutdownTimeout.
	var run func(context.Context) error
	var ping func(context.Context) error
	var closeKafka func(context.Context) error
	if cfg.Delivery == "exactly-once" {
		t, err := kafka.NewTransactor(kafka.TransactConfig{Consumer: consumerCfg, TransactionalID: cfg.transactionalID()})
		if err != nil {
			return err
		}
		metrics = worker.NewMetrics(registry, &progress, nil)
		pipeline.Observer = metrics
		ping, closeKafka = producer.Ping, t.Close
		run = func(ctx context.Context) error {
			return sequences.RunTransactions(ctx, pipeline, t, decode, modelEngine{versions}, sinks, &progress)
		}
	} else {
		consumer, err := kafka.NewConsumer(consumerCfg)
		if err != nil {
			return err
		}
		metrics = worker.NewMetrics(registry, &progress, consumer.Lag)
		pipeline.Observer = metrics
		ping, closeKafka = consumer.Ping, consumer.Close
		sink, rejects := sinks(producer)
		source := sequences.MessageSource{Reader: consumer, NumSkills: m.NumSkills, MaxBytes: cfg.MaxMessageBytes}
		run = func(ctx context.Context) error {
			_, err := worker.Run(ctx, pipeline, source, modelEngine{versions}, sink, rejects, &progress)
			return err
		}
	}

	log.Info("serving", "model", m.Name+"/"+m.Version, "num_skills", m.NumSkills, "placement", placement.Name(),
		"delivery", cfg.Delivery, "input_topic", cfg.InputTopic, "output_topic", cfg.OutputTopic,
		"dead_letter_topic", cfg.DeadLetterTopic, "group", cfg.Group, "http", cfg.HTTPAddr)
	err = runServing(ctx, cfg, registry, ping, closeKafka, run,
		"draining took longer than %v; unacknowledged input will be redelivered after a restart")
	log.Info("stopped after draining", "consumed", progress.Consumed.Load(), "scored", progress.Students.Load(),
		"dead_lettered", progress.Rejected.Load())
	return err
}

// transactionalID is the exactly-once producer's id: DKTSCORE_KAFKA_TRANSACTIONAL_ID,
// else GROUP-HOSTNAME-PID.
func (c serveConfig) transactionalID() string {
	if c.TransactionalID != "" {
		return c.TransactionalID
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%s-%d", c.Group, host, os.Getpid())
}

// runServing runs the pipeline with /healthz, /readyz and /metrics served
// beside it, until it returns or ctx ends (SIGTERM); then it waits up to
// ShutdownTimeout for the pipeline to finish its work (overdue, with that
// timeout, says what is left if it does not), and closes the Kafka client
// and the HTTP server.
func runServing(ctx context.Context, cfg serveConfig, registry *prometheus.Registry, ping, closeKafka func(context.Context) error,
	run func(context.Context) error, overdue string) error {
	server := &http.Server{Addr: cfg.HTTPAddr, Handler: opsHandler(registry, ping), ReadHeaderTimeout: 5 * time.Second}
	serverErr := make(chan error, 1)
	go func() { serverErr <- server.ListenAndServe() }()

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
			return fmt.Errorf(overdue, cfg.ShutdownTimeout)
		}
	}
	if errors.Is(runErr, context.Canceled) {
		runErr = nil
	}
	shutdown, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	closeErr := closeKafka(shutdown)
	server.Shutdown(shutdown)
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
