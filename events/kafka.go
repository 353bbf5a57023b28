package events

import (
	"context"

	"github.com/dktscore/dktscore/io/kafka"
)

// ConsumerLog is at-least-once event delivery (a Log): results and states
// are produced with acks=all, and an input offset is committed from its ack.
// Consumer may be set after the pipeline is made: the consumer's rebalance
// callbacks call the pipeline, and Run is the first to use it.
type ConsumerLog struct {
	Consumer *kafka.Consumer
	Producer *kafka.Producer
	MaxPoll  int // most messages per poll
}

// Poll waits for one message, then takes what the consumer has already
// fetched, up to MaxPoll.
func (l *ConsumerLog) Poll(ctx context.Context) ([]kafka.Message, []func(error), error) {
	return l.Consumer.ReadBatch(ctx, l.MaxPoll)
}

func (l *ConsumerLog) WriteResults(ctx context.Context, msgs []kafka.Message) error {
	return l.Producer.ProduceAll(ctx, msgs)
}

func (l *ConsumerLog) WriteStates(ctx context.Context, msgs []kafka.Message) ([]int64, error) {
	return l.Producer.ProduceToPartitions(ctx, msgs)
}

// Commit has nothing to do: the acks mark the offsets.
func (*ConsumerLog) Commit(context.Context, bool) error { return nil }

// TransactionLog is exactly-once event delivery (a Log): a poll's results,
// dead letters, states and input offsets are committed in one transaction.
// Transactor may be set after the pipeline is made, as ConsumerLog's
// Consumer.
type TransactionLog struct{ Transactor *kafka.Transactor }

// Poll returns the next messages, without acks: Commit finishes them all.
func (l *TransactionLog) Poll(ctx context.Context) ([]kafka.Message, []func(error), error) {
	msgs, err := l.Transactor.Poll(ctx)
	return msgs, make([]func(error), len(msgs)), err
}

func (l *TransactionLog) WriteResults(ctx context.Context, msgs []kafka.Message) error {
	return l.Transactor.ProduceAll(ctx, msgs)
}

func (l *TransactionLog) WriteStates(ctx context.Context, msgs []kafka.Message) ([]int64, error) {
	return l.Transactor.ProduceToPartitions(ctx, msgs)
}

func (l *TransactionLog) Commit(ctx context.Context, commit bool) error {
	return l.Transactor.End(ctx, commit)
}
