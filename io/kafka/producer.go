package kafka

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Producer writes records synchronously. It is idempotent (kgo's default: the
// broker drops the duplicates its own retries would create) and waits for
// every in-sync replica (acks=all), so a nil return means the record survives
// the loss of the leader. Safe for concurrent use.
type Producer struct {
	cl       *kgo.Client
	maxBytes int32
	first    *firstContact // security.go
}

// NewProducer validates cfg and connects lazily: the first Produce dials.
func NewProducer(cfg ClientConfig) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts, err := cfg.opts()
	if err != nil {
		return nil, err
	}
	opts = append(opts, producerOpts(cfg)...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: creating the producer for brokers %v: %w", cfg.Brokers, err)
	}
	return &Producer{cl: cl, maxBytes: cfg.maxMessageBytes(), first: &firstContact{brokers: cfg.Brokers}}, nil
}

func producerOpts(cfg ClientConfig) []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(cfg.maxMessageBytes()),
		kgo.RecordPartitioner(recordPartitioner{defaultPartitioner()}), // partition.go
	}
}

// Produce sends m and returns once the broker acknowledged it (or failed).
// m.Partition and m.Offset are ignored; the key picks the partition.
func (p *Producer) Produce(ctx context.Context, m Message) error {
	return p.ProduceAll(ctx, []Message{m})
}

// ProduceAll sends msgs together and returns once the broker acknowledged
// every one, or the first failure (mapped as Produce maps it). The key picks
// each message's partition. Sending together costs one round trip per batch
// the producer forms, not one per message. On error some messages may have
// been written (none twice: the producer is idempotent); treat all of them
// as not durable.
func (p *Producer) ProduceAll(ctx context.Context, msgs []Message) error {
	records, err := toRecords(msgs, p.maxBytes)
	if err != nil {
		return err
	}
	if err := p.first.check(ctx, p.cl); err != nil {
		return err
	}
	_, err = produceRecords(msgs, records, p.maxBytes, p.cl.ProduceSync(ctx, records...))
	return err
}

// Ping checks that a broker answers (for /readyz).
func (p *Producer) Ping(ctx context.Context) error {
	if err := p.cl.Ping(ctx); err != nil {
		return pingError(p.first.brokers, "", err)
	}
	return nil
}

// Close waits, bounded by ctx, for records still being produced (every
// Produce waits for its own, so only a call racing Close has any), then
// closes the connections.
func (p *Producer) Close(ctx context.Context) error {
	err := p.cl.Flush(ctx)
	p.cl.Close()
	return err
}
