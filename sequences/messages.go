// Package sequences is sequence mode over Kafka: one input message holds a
// student's whole history, scored by the worker pipeline. It has the
// pipeline's Kafka source (MessageSource, DecodeMessage), its sinks
// (ArrowMessageSink for results, DeadLetterSink for bad input) and the
// exactly-once loop (RunTransactions).
package sequences

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/io/records"
	"github.com/dktscore/dktscore/worker"
)

// MessageReader is a stream of messages with acks (the Kafka consumer).
type MessageReader interface {
	Read(ctx context.Context) (kafka.Message, func(error), error)
}

// MessageWriter sends one message and returns once the broker has it (the
// producer, or the transactor inside a transaction).
type MessageWriter interface {
	Produce(ctx context.Context, m kafka.Message) error
}

// MessageSource decodes JSON sequence records from messages. A message that is
// too large, undecodable or invalid becomes a reject carrying the original
// message, for the dead-letter topic.
type MessageSource struct {
	Reader    MessageReader
	NumSkills int
	MaxBytes  int // larger values are dead-lettered undecoded
}

func (s MessageSource) Read(ctx context.Context) (worker.Work, worker.Ack, error) {
	m, ack, err := s.Reader.Read(ctx)
	if err != nil {
		return worker.Work{}, nil, err
	}
	return DecodeMessage(m, s.NumSkills, s.MaxBytes), worker.Ack(ack), nil
}

// DecodeMessage turns one message into work: a sequence, or a reject.
func DecodeMessage(m kafka.Message, numSkills, maxBytes int) worker.Work {
	where := fmt.Sprintf("%s[%d]@%d", m.Topic, m.Partition, m.Offset)
	if maxBytes > 0 && len(m.Value) > maxBytes {
		return worker.Work{Source: m, Reject: &records.RejectError{Input: where, Record: -1, StudentID: string(m.Key), Kind: records.RejectTooLarge,
			Reason: fmt.Sprintf("message of %d bytes exceeds the %d-byte limit; split the history or raise DKTSCORE_MAX_MESSAGE_BYTES", len(m.Value), maxBytes)}}
	}
	seq, err := records.DecodeJSONSequence(m.Value, numSkills)
	var reject *records.RejectError
	if errors.As(err, &reject) {
		reject.Input = where
		return worker.Work{Source: m, Reject: reject}
	}
	if err != nil {
		// DecodeJSONSequence reports every bad record as a RejectError; any
		// other error is unexpected, so no record kind can be claimed for it.
		return worker.Work{Source: m, Reject: &records.RejectError{Input: where, Record: -1, Kind: records.RejectOther, Reason: err.Error()}}
	}
	seq.Record = -1
	return worker.Work{Seq: seq, Source: m}
}

// ArrowMessageSink publishes each scored group of students as one message whose
// value is an Arrow IPC stream (schema + one record batch), with the source
// topic/partition/offset of every row so consumers can deduplicate.
type ArrowMessageSink struct {
	Writer MessageWriter
	Topic  string
	Output columnar.Config // WithSource is forced on
	Model  string          // model name for the headers
}

// Write publishes one message per model version among the results (a model
// reload between batches can mix them), so each message's version header and
// schema metadata are true for every row in it.
func (s ArrowMessageSink) Write(ctx context.Context, results []worker.Result) error {
	for len(results) > 0 {
		n := 1
		for n < len(results) && results[n].ModelVersion == results[0].ModelVersion {
			n++
		}
		if err := s.write(ctx, results[:n]); err != nil {
			return err
		}
		results = results[n:]
	}
	return nil
}

func (s ArrowMessageSink) write(ctx context.Context, results []worker.Result) error {
	cfg := s.Output
	cfg.WithSource = true
	if v := results[0].ModelVersion; v != "" {
		cfg.ModelVersion = v
	}
	rows := make([]columnar.MasteryRow, len(results))
	for i, r := range results {
		src, _ := r.Source.(kafka.Message)
		rows[i] = columnar.MasteryRow{StudentID: r.StudentID, SeqLen: int32(r.SeqLen), WindowStart: int32(r.WindowStart),
			Mastery: r.Mastery, ModelVersion: cfg.ModelVersion,
			SourceTopic: src.Topic, SourcePartition: src.Partition, SourceOffset: src.Offset}
	}
	value, err := columnar.EncodeIPCStream(cfg, rows, time.Now())
	if err != nil {
		return err
	}
	return s.Writer.Produce(ctx, kafka.ResultMessage(s.Topic, s.Model, cfg.ModelVersion, len(rows), value))
}

// DeadLetterSink sends a rejected message, original key, bytes and headers, to
// the dead-letter topic with headers naming the reason and where it came from
// (kafka.DeadLetter).
type DeadLetterSink struct {
	Writer MessageWriter
	Topic  string
}

func (s DeadLetterSink) Reject(ctx context.Context, w worker.Work) error {
	src, _ := w.Source.(kafka.Message)
	return s.Writer.Produce(ctx, kafka.DeadLetter(src, s.Topic, w.Reject.Reason))
}
