package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/worker"
)

// Log formats accepted by DKTSCORE_LOG_FORMAT.
const (
	logText = "text"
	logJSON = "json"
)

// loggingProblems reports a bad DKTSCORE_LOG_FORMAT or DKTSCORE_LOG_LEVEL; it
// is part of the serve configuration's validation.
func loggingProblems(format, level string) []error {
	var errs []error
	if f := strings.ToLower(format); f != logText && f != logJSON {
		errs = append(errs, fmt.Errorf("DKTSCORE_LOG_FORMAT %q is not %s or %s", format, logText, logJSON))
	}
	if _, err := parseLogLevel(level); err != nil {
		errs = append(errs, err)
	}
	return errs
}

func parseLogLevel(level string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return 0, fmt.Errorf("DKTSCORE_LOG_LEVEL %q is not debug, info, warn or error", level)
	}
	return l, nil
}

// newLogger builds the worker's structured logger on w.
//
// What may be logged: counts, topics, partitions, offsets, durations, model
// names, reasons' kinds and errors about the worker itself. Never record
// contents or student ids — a reject reason quotes the bad value, so it goes
// to the dead-letter topic, not to the log.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	lvl, err := parseLogLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch strings.ToLower(format) {
	case logJSON:
		h = slog.NewJSONHandler(w, opts)
	case logText:
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("DKTSCORE_LOG_FORMAT %q is not %s or %s", format, logText, logJSON)
	}
	return slog.New(h), nil
}

// loggedRejects logs each dead letter at debug level by where it came from
// and its kind — never its reason, which quotes the record.
type loggedRejects struct {
	next worker.RejectSink
	log  *slog.Logger
}

func (l loggedRejects) Reject(ctx context.Context, w worker.Work) error {
	err := l.next.Reject(ctx, w)
	if l.log.Enabled(ctx, slog.LevelDebug) {
		src, _ := w.Source.(kafka.Message)
		l.log.Debug("dead-lettered a record", "kind", worker.RejectKind(w.Reject.Reason),
			"topic", src.Topic, "partition", src.Partition, "offset", src.Offset, "error", err)
	}
	return err
}
