package kafka

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// backupIter stands in for kgo's iterator over partitions by buffered
// records: every partition has none buffered.
type backupIter struct{ next, n int }

func (b *backupIter) Next() (int, int64) { b.next++; return b.next - 1, 0 }
func (b *backupIter) Rem() int           { return b.n - b.next }

func TestRecordPartitioner(t *testing.T) {
	const n = 6
	def := defaultPartitioner().ForTopic("t")
	p := recordPartitioner{defaultPartitioner()}.ForTopic("t").(kgo.TopicBackupPartitioner)
	explicit := func(key string, partition int32) *kgo.Record {
		r := &kgo.Record{Topic: "t", Key: []byte(key), Partition: partition}
		withExplicitPartition(context.Background(), r)
		return r
	}
	for _, tc := range []struct {
		name       string
		r          *kgo.Record
		want       int // -1: kgo fails the record
		consistent bool
	}{
		{"explicit partition wins over the key", explicit("alice", 4), 4, true},
		{"explicit partition 0", explicit("alice", 0), 0, true},
		{"explicit partition past the topic's count", explicit("alice", n), -1, true},
		{"explicit negative partition", explicit("alice", -2), -1, true},
		{"explicit without a key", explicit("", 3), 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := p.RequiresConsistency(tc.r); got != tc.consistent {
				t.Errorf("RequiresConsistency = %t, want %t", got, tc.consistent)
			}
			if got := p.PartitionByBackup(tc.r, n, &backupIter{n: n}); got != tc.want {
				t.Errorf("PartitionByBackup = %d, want %d", got, tc.want)
			}
		})
	}
	// Unmarked keyed records go where kgo's default puts them (murmur2), so
	// results keep their existing placement; several keys make a
	// coincidence with the explicit Partition field unlikely.
	for i := range 20 {
		key := fmt.Sprintf("student-%d", i)
		r := &kgo.Record{Topic: "t", Key: []byte(key), Partition: 5}
		want := def.(kgo.TopicBackupPartitioner).PartitionByBackup(r, n, &backupIter{n: n})
		if got := p.PartitionByBackup(r, n, &backupIter{n: n}); got != want {
			t.Fatalf("key %q: partition %d, want the default partitioner's %d", key, got, want)
		}
		if !p.RequiresConsistency(r) {
			t.Fatalf("key %q: a keyed record must keep its partition (RequiresConsistency false)", key)
		}
	}
}

func TestProduceToPartitionsRejectsNegativePartition(t *testing.T) {
	p, err := NewProducer(ClientConfig{Brokers: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	_, err = p.ProduceToPartitions(context.Background(), []Message{{Topic: "t", Partition: -1, Value: []byte("v")}})
	if !errors.Is(err, ErrNoSuchPartition) {
		t.Fatalf("ProduceToPartitions(partition -1) = %v, want ErrNoSuchPartition before dialing", err)
	}
}
