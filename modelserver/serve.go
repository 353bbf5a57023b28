package modelserver

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/lifecycle"
	"github.com/dktscore/dktscore/model"
)

// Serve runs model-server with a validated configuration until ctx ends
// (SIGTERM) or it fails: the model is loaded (and hot-reloaded from the base
// path), then gRPC, REST and the operations endpoint start; on SIGTERM they
// stop taking requests, answer those in flight, and the pipeline drains.
func Serve(ctx context.Context, cfg Config, log *slog.Logger) error {
	placement, err := place(ctx, cfg, log)
	if err != nil {
		return err
	}
	sessionConfig, err := placement.SessionConfig(gpu.SessionConfig{IntraOpThreads: gpu.ThreadsPerSession(cfg.Threads, cfg.Sessions)}).ConfigProto()
	if err != nil {
		return err
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	status := newVersionStatus()
	versions, err := lifecycle.OpenVersions(model.VersionsConfig{Base: cfg.ModelBasePath,
		Load: model.Config{Sessions: cfg.Sessions, SessionConfig: sessionConfig}, Report: status.record}, registry)
	if err != nil {
		return err
	}
	defer versions.Close()
	m := versions.Current()
	if err := cfg.Batching.CheckModel(m.NumSkills); err != nil {
		return err
	}
	s, err := newServer(cfg, versions, status, registry)
	if err != nil {
		return err
	}

	ops := lifecycle.OpsHandler(registry, func(context.Context) error { return nil })
	// The operations endpoint stays plain HTTP even with --ssl_config_file:
	// it serves the kubelet's probes and the scraper inside the pod.
	g := newGRPCServer(s, cfg.MaxRequestBytes, cfg.TLS)
	p := lifecycle.Process{HTTPAddr: cfg.HTTPAddr, Handler: ops, Pipeline: s.Run, ShutdownTimeout: cfg.ShutdownTimeout,
		Overdue: "answering the requests in flight took longer than %v; their callers get an error",
		Frontends: []lifecycle.Frontend{{Name: "gRPC", Addr: portAddr(cfg.GRPCPort), Serve: func(l net.Listener) error {
			// A stop that comes before Serve starts (SIGTERM during the
			// model load) makes Serve say so; that is a clean stop too.
			if err := g.Serve(l); !errors.Is(err, grpc.ErrServerStopped) {
				return err
			}
			return nil
		}, Stop: func(ctx context.Context) { gracefulStop(ctx, g) }}}}
	if cfg.PollSeconds > 0 {
		p.Background = append(p.Background, func(ctx context.Context) { versions.Watch(ctx, time.Duration(cfg.PollSeconds)*time.Second) })
	}
	if cfg.RESTPort != 0 {
		p.Frontends = append(p.Frontends, lifecycle.HTTPFrontend("REST", portAddr(cfg.RESTPort), s.restHandler(ops), cfg.TLS))
	}
	log.Info("model server", "model", cfg.ModelName, "version", m.Name+"/"+m.Version, "num_skills", m.NumSkills,
		"grpc_port", cfg.GRPCPort, "rest_api_port", cfg.RESTPort, "batching", cfg.EnableBatching, "batch_size", cfg.BatchSize,
		"max_delay", cfg.MaxDelay, "sessions", cfg.Sessions, "max_queued_sequences", cfg.MaxQueuedSequences,
		"placement", placement.Name(), "http", cfg.HTTPAddr, "tls", cfg.TLS != nil, "client_verify", cfg.TLS != nil && cfg.TLS.ClientAuth == tls.RequireAndVerifyClientCert)
	return lifecycle.Run(ctx, p)
}

// portAddr listens on every interface, as tensorflow_model_server does.
func portAddr(port int) string { return net.JoinHostPort("", strconv.Itoa(port)) }

// gracefulStop lets the calls in flight finish, or cuts them when ctx ends.
func gracefulStop(ctx context.Context, g *grpc.Server) {
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		g.Stop()
		<-done
	}
}

// place picks the device: the first selected GPU, else the CPU. TensorFlow's
// device options are process-wide, and one process serves the API's port.
func place(ctx context.Context, cfg Config, log *slog.Logger) (gpu.Placement, error) {
	selection, err := gpu.ParseSelection(cfg.GPUs)
	if err != nil {
		return gpu.Placement{}, err
	}
	found, err := gpu.Discover(ctx, gpu.DiscoverOptions{})
	if err != nil {
		return gpu.Placement{}, err
	}
	if found.CPUOnlyReason != "" && !selection.None {
		log.Warn("running on CPU", "reason", found.CPUOnlyReason)
	}
	plan, err := gpu.Plan(found.Devices, selection, cfg.GPUMemFraction, cfg.GPUAllowGrowth)
	if err != nil {
		return gpu.Placement{}, err
	}
	if len(plan) > 1 {
		log.Warn("model-server runs on one GPU; the others selected are left idle (run one model-server per GPU behind a load balancer)",
			"selected", len(plan), "using", plan[0].Name())
	}
	return plan[0], nil
}
