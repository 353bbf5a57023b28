package serving

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"

	"github.com/dktscore/dktscore/config"
	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/lifecycle"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/supervise"
	"github.com/prometheus/client_golang/prometheus"
)

// Serve runs serve with a validated configuration until ctx ends (SIGTERM)
// or the worker fails: one worker process per selected GPU under a
// supervisor, or this process alone on one GPU or the CPU. Children log to
// logw.
func Serve(ctx context.Context, cfg Config, log *slog.Logger, logw io.Writer) error {
	plan, err := placeWorkers(ctx, cfg, log)
	if err != nil {
		return err
	}
	if len(plan) > 1 {
		return superviseWorkers(ctx, cfg, plan, log, logw)
	}
	return serveOne(ctx, cfg, plan[0], log)
}

// placeWorkers decides the worker processes: one per selected GPU, or one CPU
// worker on a host without GPUs (or with DKTSCORE_GPUS=none).
func placeWorkers(ctx context.Context, cfg Config, log *slog.Logger) ([]gpu.Placement, error) {
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

// serveOne runs this process's worker on placement p in the configured mode.
func serveOne(ctx context.Context, cfg Config, p gpu.Placement, log *slog.Logger) error {
	sessionConfig, err := p.SessionConfig(gpu.SessionConfig{IntraOpThreads: gpu.ThreadsPerSession(cfg.Threads, cfg.Sessions)}).ConfigProto()
	if err != nil {
		return err
	}
	registry := prometheus.NewRegistry()
	versions, err := lifecycle.OpenVersions(model.VersionsConfig{Base: cfg.Model, Pin: cfg.ModelVersion,
		Load: model.Config{Sessions: cfg.Sessions, SessionConfig: sessionConfig}}, registry)
	if err != nil {
		return err
	}
	defer versions.Close()
	if cfg.Mode == Events {
		// Event mode never polls: its version is pinned (eventProblems).
		return serveEvents(ctx, cfg, versions.Current(), registry, p, log)
	}
	return serveSequences(ctx, cfg, versions, registry, p, log)
}

// superviseWorkers runs one `dktscore serve` child per placement, because
// TensorFlow's device and memory options are process-wide. Child i listens on
// the parent's HTTP port + 1 + i; the parent's endpoints report every child.
func superviseWorkers(ctx context.Context, cfg Config, plan []gpu.Placement, log *slog.Logger, logw io.Writer) error {
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
			Env:       ChildEnv(os.Environ(), cfg, p, addr),
			HealthURL: "http://" + addr + "/healthz", ReadyURL: "http://" + addr + "/readyz", MetricsURL: "http://" + addr + "/metrics",
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
	mux.Handle("/metrics", sup.MetricsHandler())
	log.Info("supervising workers", "workers", len(children), "gpus", cfg.GPUs)
	return lifecycle.Run(ctx, lifecycle.Process{HTTPAddr: cfg.HTTPAddr, Handler: mux, Pipeline: sup.Run, ShutdownTimeout: cfg.ShutdownTimeout,
		Overdue: "the workers took longer than %v to stop"})
}

// ChildEnv is the environment of the supervised worker for placement p,
// listening on addr. Later entries win (exec.Cmd keeps the last of a name):
// the parent's resolved config over its environment, then what differs per
// child — its device, its port, its name, and its transactional id: children
// sharing one id would fence each other's transactions forever, so a set id
// becomes ID-<worker name>. An unset id stays unset: each child derives
// GROUP-HOSTNAME-PID from its own pid.
func ChildEnv(parent []string, cfg Config, p gpu.Placement, addr string) []string {
	env := append(append(slices.Clip(parent), Settings(&cfg).Environ()...), p.ChildEnv()...)
	env = append(env, config.Prefix+"HTTP_ADDR="+addr, config.Prefix+"SUPERVISED_WORKER="+p.Name())
	if cfg.TransactionalID != "" {
		env = append(env, config.Prefix+"KAFKA_TRANSACTIONAL_ID="+cfg.TransactionalID+"-"+p.Name())
	}
	return env
}

// brokerReady is readiness for a worker that needs its Kafka brokers.
func brokerReady(ping func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := ping(ctx); err != nil {
			return fmt.Errorf("broker unreachable: %w", err)
		}
		return nil
	}
}

// closeOnce makes a client's Close safe to call from both the lifecycle
// (bounded, in the shutdown order) and a deferred cleanup of an early
// return: only the first call closes.
func closeOnce(close func(context.Context) error) func(context.Context) error {
	var once sync.Once
	var err error
	return func(ctx context.Context) error {
		once.Do(func() { err = close(ctx) })
		return err
	}
}
