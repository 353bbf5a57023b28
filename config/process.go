package config

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/dktscore/dktscore/gpu"
)

// Log formats.
const (
	LogText = "text"
	LogJSON = "json"
)

// Process is what every server process (serve, model-server) is told about
// its operations endpoint, its logs and its shutdown.
type Process struct {
	HTTPAddr        string
	LogFormat       string
	LogLevel        string
	ShutdownTimeout time.Duration
}

// DeclareProcess declares the settings of Process, bound to p.
func DeclareProcess(set *Set, p *Process, shutdownHelp string) {
	String(set, &p.HTTPAddr, Spec{Env: "HTTP_ADDR", Flag: "http-addr", Default: ":8080",
		Help: "listen address for /healthz, /readyz and /metrics"}).Check(hostPort)
	Duration(set, &p.ShutdownTimeout, Spec{Env: "SHUTDOWN_TIMEOUT", Flag: "shutdown-timeout", Default: "30s",
		Help: shutdownHelp}).Check(Positive[time.Duration])
	OneOf(set, &p.LogFormat, []string{LogText, LogJSON}, Spec{Env: "LOG_FORMAT", Default: LogText,
		Help: "log format on stderr: text (key=value) or json (one object per line)"})
	OneOf(set, &p.LogLevel, []string{"debug", "info", "warn", "error"}, Spec{Env: "LOG_LEVEL", Default: "info",
		Help: "least severe log level written: debug, info, warn or error"})
}

func hostPort(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return errors.New("is not host:port; e.g. :8080")
	}
	return nil
}

// NewLogger builds the process's structured logger on w.
//
// What may be logged: counts, topics, partitions, offsets, durations, model
// names, reasons' kinds and errors about the worker itself. Never record
// contents, request payloads or student ids — a reject reason quotes the
// bad value, so it goes to the dead-letter topic or the client, not to the
// log.
func (p Process) NewLogger(w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(p.LogLevel)) // one of the four names the setting accepts
	opts := &slog.HandlerOptions{Level: level}
	if p.LogFormat == LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// GPU selects devices and their memory for TensorFlow.
type GPU struct {
	GPUs           string
	GPUMemFraction float64
	GPUAllowGrowth bool
}

// DeclareGPU declares the settings of GPU, bound to g.
func DeclareGPU(set *Set, g *GPU, gpusHelp string) {
	String(set, &g.GPUs, Spec{Env: "GPUS", Flag: "gpus", Default: "all", Help: gpusHelp}).
		Check(func(s string) error { _, err := gpu.ParseSelection(s); return err })
	Float(set, &g.GPUMemFraction, Spec{Env: "GPU_MEMORY_FRACTION", Flag: "gpu-memory-fraction", Default: "0",
		Help: "per-process GPU memory fraction in (0, 1]; 0 = TensorFlow's default"}).
		Check(func(f float64) error {
			if !(f >= 0 && f <= 1) {
				return errors.New("is outside (0, 1]; 0 keeps TensorFlow's default")
			}
			return nil
		})
	Bool(set, &g.GPUAllowGrowth, Spec{Env: "GPU_ALLOW_GROWTH", Flag: "gpu-allow-growth",
		Help: "allocate GPU memory on demand instead of up front"})
}
