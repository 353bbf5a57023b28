package sequences

import (
	"context"
	"errors"
	"io"

	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/worker"
)

// Transactor is the exactly-once loop's view of Kafka (kafka.Transactor).
type Transactor interface {
	Poll(ctx context.Context) ([]kafka.Message, error)
	Produce(ctx context.Context, m kafka.Message) error
	End(ctx context.Context, commit bool) error
}

// TransactSinks builds the sinks that write inside the current transaction.
type TransactSinks func(w MessageWriter) (worker.Sink, worker.RejectSink)

// RunTransactions scores messages exactly once: each poll runs through the
// pipeline to completion, and its results, its dead letters and the consumed
// offsets are committed in one Kafka transaction — or, on any failure, aborted
// together, so the messages are redelivered and nothing half-done is visible to
// read_committed consumers. It returns when ctx ends (after finishing the
// current transaction) or on a fatal error.
func RunTransactions(ctx context.Context, cfg worker.Config, t Transactor, decode func(kafka.Message) worker.Work,
	engine worker.Engine, sinks TransactSinks, progress *worker.Progress) error {
	sink, rejects := sinks(t)
	for ctx.Err() == nil {
		msgs, err := t.Poll(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(msgs) == 0 {
			continue
		}
		works := make([]worker.Work, len(msgs))
		for i, m := range msgs {
			works[i] = decode(m)
		}
		// The poll is finished even when a stop arrives meanwhile: a drained
		// transaction commits instead of being thrown away.
		//
		// progress counts as the work is done, before End: an aborted
		// transaction's records are counted again when they are redelivered,
		// as at-least-once counts a redelivery after a crash. The metrics'
		// help says so (worker.Metrics); counting only after End would instead leave
		// dktscore_in_flight at 0 for the whole transaction and still count
		// the rejects' kinds and batches of aborted work.
		_, runErr := worker.Run(context.WithoutCancel(ctx), cfg, &workList{works: works}, engine, sink, rejects, progress)
		endErr := t.End(context.WithoutCancel(ctx), runErr == nil)
		switch {
		case runErr != nil:
			return errors.Join(runErr, endErr)
		case errors.Is(endErr, kafka.ErrAborted):
			continue // a rebalance took the partitions; the new owner redoes the work
		case endErr != nil:
			return endErr
		}
	}
	return nil
}

// workList is a finite source over already-decoded work.
type workList struct {
	works []worker.Work
	next  int
}

func (l *workList) Read(context.Context) (worker.Work, worker.Ack, error) {
	if l.next == len(l.works) {
		return worker.Work{}, nil, io.EOF
	}
	l.next++
	return l.works[l.next-1], nil, nil
}
