package serving

import (
	"context"
	"log/slog"

	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/worker"
)

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
