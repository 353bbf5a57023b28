package serving

import (
	"context"
	"io"
	"log/slog"

	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/worker"
)

// NewLogger builds the worker's structured logger on w from a validated
// Config.
//
// What may be logged: counts, topics, partitions, offsets, durations, model
// names, reasons' kinds and errors about the worker itself. Never record
// contents or student ids — a reject reason quotes the bad value, so it goes
// to the dead-letter topic, not to the log.
func NewLogger(w io.Writer, cfg Config) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel)) // one of the four names the setting accepts
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
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
		l.log.Debug("dead-lettered a record", "kind", w.Reject.CountedKind(),
			"topic", src.Topic, "partition", src.Partition, "offset", src.Offset, "error", err)
	}
	return err
}
