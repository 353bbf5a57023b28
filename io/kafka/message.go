package kafka

import (
	"errors"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Message is one Kafka record in plain Go types. Headers is a map because
// dktscore never sends a header key twice; on read, a repeated key keeps its
// last value.
type Message struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   map[string][]byte
}

// Sentinel errors callers branch on.
var (
	// ErrMessageTooLarge: a record exceeds ClientConfig.MaxMessageBytes (or the
	// broker refused it as too large). Split the output or raise both limits.
	ErrMessageTooLarge = errors.New("kafka: message too large")
	// ErrClosed: the consumer, producer or transactor was closed.
	ErrClosed = errors.New("kafka: client closed")
	// ErrAborted: a transaction could not commit because the group rebalanced
	// (or this member was fenced) since Poll; it was aborted, the consumed
	// messages will be delivered again, and the caller can just continue.
	ErrAborted = errors.New("kafka: transaction aborted by a group rebalance")
)

// recordOverhead over-approximates the bytes Kafka adds to one record in a
// batch of one (61-byte batch header plus varint lengths and deltas), so the
// size check below errs on the side of refusing early with a clear message
// rather than letting the broker refuse later.
const recordOverhead = 61 + 32

// encodedSize estimates m's size on the wire in a batch of its own.
func encodedSize(m Message) int {
	n := recordOverhead + len(m.Key) + len(m.Value)
	for k, v := range m.Headers {
		n += len(k) + len(v) + 10
	}
	return n
}

// toRecord validates m for producing and converts it. Partition and Offset
// are ignored: the partitioner hashes the key (murmur2, as the Java client),
// so all records of one key keep their order in one partition.
func toRecord(m Message, maxBytes int32) (*kgo.Record, error) {
	if m.Topic == "" {
		return nil, errors.New("kafka: Message.Topic is empty: set the topic to produce to")
	}
	if size := encodedSize(m); size > int(maxBytes) {
		return nil, fmt.Errorf("%w: a record for topic %q is about %d bytes (key %d, value %d), over the %d-byte limit: split the output into smaller messages, or raise the topic's max.message.bytes and ClientConfig.MaxMessageBytes together",
			ErrMessageTooLarge, m.Topic, size, len(m.Key), len(m.Value), maxBytes)
	}
	r := &kgo.Record{Topic: m.Topic, Key: m.Key, Value: m.Value}
	if len(m.Headers) > 0 {
		keys := make([]string, 0, len(m.Headers))
		for k := range m.Headers {
			keys = append(keys, k)
		}
		sort.Strings(keys) // deterministic wire order
		r.Headers = make([]kgo.RecordHeader, len(keys))
		for i, k := range keys {
			r.Headers[i] = kgo.RecordHeader{Key: k, Value: m.Headers[k]}
		}
	}
	return r, nil
}

// toRecords is toRecord for each message, in order.
func toRecords(msgs []Message, maxBytes int32) ([]*kgo.Record, error) {
	records := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		r, err := toRecord(m, maxBytes)
		if err != nil {
			return nil, err
		}
		records[i] = r
	}
	return records, nil
}

func fromRecord(r *kgo.Record) Message {
	m := Message{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value}
	if len(r.Headers) > 0 {
		m.Headers = make(map[string][]byte, len(r.Headers))
		for _, h := range r.Headers {
			m.Headers[h.Key] = h.Value
		}
	}
	return m
}

// produceError maps a produce failure at the package boundary: a too-large
// record becomes ErrMessageTooLarge with the topic and size, a closed client
// ErrClosed; anything else is wrapped with the topic.
func produceError(topic string, size int, maxBytes int32, err error) error {
	switch {
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return fmt.Errorf("%w: topic %q refused a record of about %d bytes (limit here %d): split the output or raise the topic's max.message.bytes and ClientConfig.MaxMessageBytes together: %w",
			ErrMessageTooLarge, topic, size, maxBytes, err)
	case errors.Is(err, kgo.ErrClientClosed):
		return fmt.Errorf("%w: producing to topic %q", ErrClosed, topic)
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("kafka: producing to topic %q: %w; create the topic (EnsureTopics, or the cluster's admin tools) or fix the topic name", topic, err)
	case errors.Is(err, kerr.TopicAuthorizationFailed):
		return fmt.Errorf("kafka: producing to topic %q: %w; grant this principal WRITE on the topic", topic, err)
	}
	return fmt.Errorf("kafka: producing to topic %q: %w", topic, err)
}
