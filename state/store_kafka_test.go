package state

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/dktscore/dktscore/internal/kafkatest"
	"github.com/dktscore/dktscore/io/kafka"
)

// TestStoreOverRealChangelog runs the pipeline's use of the Store against the
// real broker (DKTSCORE_KAFKA_BROKERS; scripts/kafka-local start): states are
// written to the changelog partition numbered like their input partition,
// acknowledged into the Store, evicted under a small bound and read back by
// offset through kafka.Changelog; a second Store restored from the changelog
// (as a new owner would) holds the same latest states.
func TestStoreOverRealChangelog(t *testing.T) {
	client := kafka.ClientConfig{Brokers: kafkatest.Brokers(t), ClientID: "dktscore-test"}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	suffix := time.Now().UnixNano()
	in, topic := fmt.Sprintf("dktscore-test-store-in-%d", suffix), fmt.Sprintf("dktscore-test-store-state-%d", suffix)
	if err := kafka.EnsureTopics(ctx, client, 2, in); err != nil {
		t.Fatal(err)
	}
	if err := kafka.EnsureChangelogTopic(ctx, client, topic, in); err != nil {
		t.Fatal(err)
	}
	p, err := kafka.NewProducer(client)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	cl, err := kafka.NewChangelog(client, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close(context.Background())

	const partition = 1
	s, err := NewStore(StoreConfig{MaxStudents: 3, Fetch: cl})
	if err != nil {
		t.Fatal(err)
	}
	// Three polls of events of ten students; each poll's states are written
	// together, as the pipeline does, then acknowledged into the Store.
	students := make([]string, 10)
	for i := range students {
		students[i] = fmt.Sprintf("student-%02d", i)
	}
	latest := map[string]Record{}
	for poll := range 3 {
		var batch []Record
		var msgs []kafka.Message
		for i, student := range students {
			prev, ok, err := s.Get(ctx, partition, student)
			if err != nil {
				t.Fatalf("poll %d: Get(%q): %v", poll, student, err)
			}
			if ok != (poll > 0) || ok && !slices.Equal(prev.State, latest[student].State) {
				t.Fatalf("poll %d: Get(%q) = %+v, %t; want the state of the previous poll %+v", poll, student, prev, ok, latest[student])
			}
			offset := int64(poll*len(students) + i) // the input offset of this event
			r := Record{StudentID: student, ModelVersion: "dkt/1", Partition: partition, Offset: offset, Events: int64(poll + 1),
				State: []float32{float32(offset), float32(poll), -1}}
			s.Put(partition, r)
			batch = append(batch, r)
			msgs = append(msgs, kafka.Message{Topic: topic, Partition: partition, Key: []byte(student), Value: r.Encode()})
		}
		offsets, err := p.ProduceToPartitions(ctx, msgs)
		if err != nil {
			t.Fatalf("poll %d: writing the changelog: %v", poll, err)
		}
		for i, r := range batch {
			s.Durable(partition, r.StudentID, offsets[i], r.Offset)
			latest[r.StudentID] = r
		}
	}
	st := s.Stats()
	if st.InMemory != 3 || st.Evicted != 7 || st.Fetches == 0 || st.FetchErrors != 0 || st.Pending != 0 {
		t.Fatalf("stats %+v; want the bound of 3 held, 7 evicted, states fetched back from the broker", st)
	}

	// A new owner restores the partition and finds every latest state.
	s2, err := NewStore(StoreConfig{MaxStudents: 4, Fetch: cl})
	if err != nil {
		t.Fatal(err)
	}
	n, err := cl.Restore(ctx, partition, func(k, v []byte, off int64) error { return s2.RestoreValue(partition, k, v, off) })
	if err != nil {
		t.Fatal(err)
	}
	if n != 30 {
		t.Fatalf("restored %d records, want the 30 written", n)
	}
	for _, student := range students {
		got, ok, err := s2.Get(ctx, partition, student)
		want := latest[student]
		if err != nil || !ok || got.Offset != want.Offset || !slices.Equal(got.State, want.State) || got.Events != 3 {
			t.Fatalf("restored Get(%q) = %+v, %t, %v; want %+v", student, got, ok, err, want)
		}
	}
	if n, err := cl.Restore(ctx, 0, func([]byte, []byte, int64) error { return nil }); err != nil || n != 0 {
		t.Fatalf("partition 0 restored %d records (%v); every state went to partition %d", n, err, partition)
	}
}

// BenchmarkRestoreFromChangelog measures how fast a new owner gets a
// partition's students back: kafka.Changelog.Restore into a Store, for
// states the size of the bundled model's (1 layer × (c, h) × 200 floats),
// one record per student. Needs the broker; reports records/s and MB/s.
//
//	DKTSCORE_KAFKA_BROKERS=127.0.0.1:9092 go test ./state -run '^$' -bench RestoreFromChangelog -benchtime 5x
func BenchmarkRestoreFromChangelog(b *testing.B) {
	client := kafka.ClientConfig{Brokers: kafkatest.Brokers(b), ClientID: "dktscore-bench"}
	const students, stateSize = 20000, 400
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	topic := fmt.Sprintf("dktscore-bench-restore-%d", time.Now().UnixNano())
	if err := kafka.EnsureCompactedTopics(ctx, client, 1, topic); err != nil {
		b.Fatal(err)
	}
	p, err := kafka.NewProducer(client)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	var bytes int64
	for start := 0; start < students; start += 500 {
		var msgs []kafka.Message
		for i := start; i < start+500; i++ {
			r := Record{StudentID: fmt.Sprintf("student-%06d", i), ModelVersion: "dkt/1", Partition: 0, Offset: int64(i), Events: 50, State: make([]float32, stateSize)}
			v := r.Encode()
			bytes += int64(len(v))
			msgs = append(msgs, kafka.Message{Topic: topic, Partition: 0, Key: []byte(r.StudentID), Value: v})
		}
		if _, err := p.ProduceToPartitions(ctx, msgs); err != nil {
			b.Fatal(err)
		}
	}
	cl, err := kafka.NewChangelog(client, topic)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close(context.Background())
	b.ResetTimer()
	for b.Loop() {
		s, err := NewStore(StoreConfig{MaxStudents: students, Fetch: cl})
		if err != nil {
			b.Fatal(err)
		}
		n, err := cl.Restore(ctx, 0, func(k, v []byte, off int64) error { return s.RestoreValue(0, k, v, off) })
		if err != nil || n != students {
			b.Fatalf("restored %d of %d: %v", n, students, err)
		}
	}
	perOp := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(students/perOp, "records/s")
	b.ReportMetric(float64(bytes)/perOp/1e6, "MB/s")
}

// BenchmarkStoreEvent is the Store's cost per applied event in the
// pipeline's pattern: Get, Put, Durable, with the state in memory.
//
//	go test ./state -run '^$' -bench StoreEvent
func BenchmarkStoreEvent(b *testing.B) {
	s, err := NewStore(StoreConfig{MaxStudents: 1 << 20, Fetch: newChangelogLog()})
	if err != nil {
		b.Fatal(err)
	}
	const students = 10000
	ids := make([]string, students)
	for i := range ids {
		ids[i] = fmt.Sprintf("student-%06d", i)
	}
	state := make([]float32, 400)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		id := ids[i%students]
		if _, _, err := s.Get(ctx, 0, id); err != nil {
			b.Fatal(err)
		}
		s.Put(0, Record{StudentID: id, ModelVersion: "dkt/1", Offset: int64(i), State: state})
		s.Durable(0, id, int64(i), int64(i))
		i++
	}
}
