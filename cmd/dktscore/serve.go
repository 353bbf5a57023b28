package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dktscore/dktscore/config"
	"github.com/dktscore/dktscore/serving"
)

const serveIntro = `Usage: dktscore serve [flags]

Scores JSON records from Kafka and publishes Arrow IPC mastery messages; bad
records go to a dead-letter topic. A record is a student's whole history by
default (--mode sequences); with --mode events (DKTSCORE_MODE=events) it is
one interaction, and each student's model state is carried from event to event
in a compacted changelog topic. HTTP on DKTSCORE_HTTP_ADDR: /healthz, /readyz,
/metrics (Prometheus, dktscore_*).
`

func serveCmd(args []string, stdout, stderr io.Writer) int {
	cfg, unknown, code, done := configureServe(args, os.Environ(), stdout, stderr)
	if done {
		return code
	}
	log := cfg.NewLogger(stderr)
	slog.SetDefault(log) // the Kafka client, the supervisor and the model reloads log through it
	for _, u := range unknown {
		log.Warn("environment variable is not read by dktscore serve", "variable", u.Name, "did_you_mean", u.Suggestion)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serving.Serve(ctx, cfg, log, stderr); err != nil {
		log.Error("dktscore serve failed", "error", err)
		return 1
	}
	return 0
}

// configureServe resolves serve's configuration from environ and args. It
// returns done=true with the exit code when serve must not start: 0 after
// --help (on stdout), 2 when the configuration is invalid — every problem in
// one message on stderr, with the unknown variables (often the cause) after
// them. Unknown variables of a valid configuration are returned, to be
// logged as warnings; a supervised child has none (its parent warned).
func configureServe(args, environ []string, stdout, stderr io.Writer) (cfg serving.Config, unknown []config.Unknown, code int, done bool) {
	set := serving.Settings(&cfg)
	res, err := set.Resolve(args, environ)
	if res.Help {
		set.WriteUsage(stdout, serveIntro)
		return cfg, nil, 0, true
	}
	if cfg.SupervisedWorker != "" {
		res.Unknown = nil
	}
	if err == nil {
		return cfg, res.Unknown, 0, false
	}
	writeProblems(stderr, "dktscore serve", err, res.Unknown)
	return cfg, nil, 2, true
}
