package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Explicit-partition produce. Event mode writes a student's state to the
// changelog partition with the same NUMBER as the input partition the
// student's events came from. Hashing the key would not do: the input's
// producers may partition with librdkafka's crc32 or Java's murmur2, and the
// changelog must line up with whatever they chose, so that whoever owns input
// partition p restores changelog partition p and finds all its students there.
//
// One client serves both kinds of record (keyed results and explicitly
// partitioned states), because inside a transaction both must go through the
// same transactional producer. A record asks for its partition to be honoured
// by carrying a marker in its Context, which kgo leaves untouched up to the
// partitioner (kgo's documented way to enrich a record for a custom
// partitioner); every other record is partitioned by kgo's default.

// explicitPartitionKey marks a record whose Partition field is to be used as is.
type explicitPartitionKey struct{}

// withExplicitPartition marks r so recordPartitioner sends it to r.Partition.
func withExplicitPartition(ctx context.Context, r *kgo.Record) {
	r.Context = context.WithValue(ctx, explicitPartitionKey{}, true)
}

func isExplicit(r *kgo.Record) bool {
	return r.Context != nil && r.Context.Value(explicitPartitionKey{}) != nil
}

// defaultPartitioner is kgo's own default (config.go: UniformBytesPartitioner
// with 64 KiB batches, adaptive, keys hashed with murmur2 as the Java client),
// so records without the marker are placed exactly as before.
func defaultPartitioner() kgo.Partitioner {
	return kgo.UniformBytesPartitioner(64<<10, true, true, nil)
}

// recordPartitioner sends marked records to their Partition field and
// everything else to the wrapped partitioner.
type recordPartitioner struct{ inner kgo.Partitioner }

func (p recordPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	return &recordTopicPartitioner{inner: p.inner.ForTopic(topic)}
}

// recordTopicPartitioner implements kgo.TopicBackupPartitioner because the
// default partitioner does, and kgo calls only PartitionByBackup on such
// partitioners. It does not implement TopicPartitionerOnNewBatch because the
// default one does not either.
type recordTopicPartitioner struct{ inner kgo.TopicPartitioner }

// RequiresConsistency is true for marked records: kgo then picks among ALL
// partitions (not only the writable ones), so the index returned below is the
// partition number, and a record for a partition that is down waits for it
// instead of going elsewhere.
func (p *recordTopicPartitioner) RequiresConsistency(r *kgo.Record) bool {
	return isExplicit(r) || p.inner.RequiresConsistency(r)
}

func (p *recordTopicPartitioner) Partition(r *kgo.Record, n int) int {
	if isExplicit(r) {
		return explicitIndex(r, n)
	}
	return p.inner.Partition(r, n)
}

func (p *recordTopicPartitioner) PartitionByBackup(r *kgo.Record, n int, backup kgo.TopicBackupIter) int {
	if isExplicit(r) {
		return explicitIndex(r, n)
	}
	if b, ok := p.inner.(kgo.TopicBackupPartitioner); ok {
		return b.PartitionByBackup(r, n, backup)
	}
	return p.inner.Partition(r, n)
}

// explicitIndex returns r.Partition, or -1 when the topic has no such
// partition: kgo then fails the record ("invalid record partitioning choice"),
// which produceToPartitions maps to ErrNoSuchPartition.
func explicitIndex(r *kgo.Record, n int) int {
	if r.Partition < 0 || int(r.Partition) >= n {
		return -1
	}
	return int(r.Partition)
}

// ErrNoSuchPartition: a record asked for a partition its topic does not have.
// For the changelog this means it has fewer partitions than the input topic;
// CheckChangelogTopic catches that at startup.
var ErrNoSuchPartition = errors.New("kafka: no such partition")

// ProduceToPartitions writes every message to partition m.Partition of
// m.Topic (the key does not choose the partition) and returns once all are
// acknowledged by every in-sync replica, with the offset each got, in the
// order of msgs. The records are sent together, so a poll's worth of changelog
// states costs one round trip, not one per student.
//
// On error some messages may have been written (the producer is idempotent,
// so none twice); the caller must treat them all as not durable and not mark
// the input offsets they derive from. Safe for concurrent use.
func (p *Producer) ProduceToPartitions(ctx context.Context, msgs []Message) ([]int64, error) {
	records, err := explicitRecords(ctx, msgs, p.maxBytes)
	if err != nil {
		return nil, err
	}
	return produceRecords(msgs, records, p.maxBytes, p.cl.ProduceSync(ctx, records...))
}

// ProduceToPartitions writes every message to partition m.Partition of
// m.Topic inside the current transaction (beginning one if needed), like
// Produce but with the partition chosen by the caller, and returns the offset
// each got. The records become visible to read_committed readers, and so to a
// changelog restore, only when End commits; until then the offsets must not be
// handed to state.Store.Durable. If End aborts, the records are never visible.
func (t *Transactor) ProduceToPartitions(ctx context.Context, msgs []Message) ([]int64, error) {
	records, err := explicitRecords(ctx, msgs, t.maxBytes)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.begin(); err != nil {
		return nil, err
	}
	return produceRecords(msgs, records, t.maxBytes, t.s.ProduceSync(ctx, records...))
}

func explicitRecords(ctx context.Context, msgs []Message, maxBytes int32) ([]*kgo.Record, error) {
	records := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		if m.Partition < 0 {
			return nil, fmt.Errorf("%w: message %d for topic %q has partition %d: set Message.Partition to the partition to write to", ErrNoSuchPartition, i, m.Topic, m.Partition)
		}
		r, err := toRecord(m, maxBytes)
		if err != nil {
			return nil, err
		}
		r.Partition = m.Partition
		withExplicitPartition(ctx, r)
		records[i] = r
	}
	return records, nil
}

// produceRecords collects the offsets of a ProduceSync over records (which
// were built from msgs, in order) or the first failure, mapped like Produce's.
func produceRecords(msgs []Message, records []*kgo.Record, maxBytes int32, results kgo.ProduceResults) ([]int64, error) {
	offsets := make([]int64, len(records))
	byRecord := make(map[*kgo.Record]int, len(records))
	for i, r := range records {
		byRecord[r] = i
	}
	for _, res := range results {
		i := byRecord[res.Record]
		if res.Err != nil {
			m := msgs[i]
			if isPartitioningError(res.Err) {
				return nil, fmt.Errorf("%w: topic %q has no partition %d (message %d): the topic has fewer partitions than the writer expects; for a changelog, give it as many partitions as the input topic: %w",
					ErrNoSuchPartition, m.Topic, m.Partition, i, res.Err)
			}
			return nil, produceError(m.Topic, encodedSize(m), maxBytes, res.Err)
		}
		offsets[i] = res.Record.Offset
	}
	return offsets, nil
}

// isPartitioningError recognises kgo's failure for a partition index out of
// range; kgo has no sentinel for it, only this message.
func isPartitioningError(err error) bool {
	return strings.Contains(err.Error(), "invalid record partitioning choice")
}
