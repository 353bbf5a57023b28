package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"
)

// Integration tests of the changelog against the real broker
// (DKTSCORE_KAFKA_BROKERS); each test uses its own topics.

// restored is what a Restore saw: the latest value per key (tombstones
// delete), its offset, and how many records came.
type restored struct {
	latest  map[string]string
	offsets map[string]int64
	records int64
}

func restoreAll(ctx context.Context, t *testing.T, cl *Changelog, partition int32) restored {
	t.Helper()
	got := restored{latest: map[string]string{}, offsets: map[string]int64{}}
	last := int64(-1)
	n, err := cl.Restore(ctx, partition, func(key, value []byte, offset int64) error {
		if offset <= last {
			return fmt.Errorf("offset %d after %d: not in offset order", offset, last)
		}
		last = offset
		got.records++
		if value == nil {
			delete(got.latest, string(key))
			delete(got.offsets, string(key))
			return nil
		}
		got.latest[string(key)] = string(value)
		got.offsets[string(key)] = offset
		return nil
	})
	if err != nil {
		t.Fatalf("Restore(%d): %v", partition, err)
	}
	if n != got.records {
		t.Fatalf("Restore(%d) returned %d, but fn saw %d records", partition, n, got.records)
	}
	return got
}

func newTestChangelog(t *testing.T, client ClientConfig, topic string) *Changelog {
	t.Helper()
	cl, err := NewChangelog(client, topic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(context.Background()) })
	return cl
}

func kv(topic string, partition int32, key, value string) Message {
	m := Message{Topic: topic, Partition: partition, Key: []byte(key)}
	if value != "" {
		m.Value = []byte(value)
	}
	return m
}

// TestChangelogRestoreLatestPerKey: overwrites of the same keys written to
// one explicit partition; Restore of that partition yields every key's latest
// value at the offset ProduceToPartitions reported, the other partitions
// nothing (the key did not choose the partition), and a record written while
// Restore runs is not read (the end is fixed when Restore begins).
func TestChangelogRestoreLatestPerKey(t *testing.T) {
	client := brokerConfig(t)
	ctx := testCtx(t, 90*time.Second)
	in, topic := uniqueName(t, "in"), uniqueName(t, "state")
	if err := EnsureTopics(ctx, client, 3, in); err != nil {
		t.Fatal(err)
	}
	if err := EnsureChangelogTopic(ctx, client, topic, in); err != nil {
		t.Fatalf("EnsureChangelogTopic: %v", err)
	}
	p, err := NewProducer(client)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())

	const part = 1
	batches := [][]Message{
		{kv(topic, part, "alice", "a1"), kv(topic, part, "bob", "b1"), kv(topic, part, "carol", "c1")},
		{kv(topic, part, "alice", "a2"), kv(topic, part, "dave", "d1")},
		{kv(topic, part, "alice", "a3"), kv(topic, part, "bob", "b2"), kv(topic, part, "carol", "")}, // carol deleted
	}
	wantOffset := map[string]int64{}
	firstOffset := int64(-1) // of the partition's first record
	for i, b := range batches {
		offsets, err := p.ProduceToPartitions(ctx, b)
		if err != nil {
			t.Fatalf("ProduceToPartitions batch %d: %v", i, err)
		}
		for j, m := range b {
			wantOffset[string(m.Key)] = offsets[j]
		}
		if i == 0 {
			firstOffset = offsets[0]
		}
	}
	delete(wantOffset, "carol")

	cl := newTestChangelog(t, client, topic)
	got := restoreAll(ctx, t, cl, part)
	want := map[string]string{"alice": "a3", "bob": "b2", "dave": "d1"}
	if !maps.Equal(got.latest, want) {
		t.Fatalf("restored %v, want the latest value per key %v", got.latest, want)
	}
	if !maps.Equal(got.offsets, wantOffset) {
		t.Fatalf("restored offsets %v, want those ProduceToPartitions returned %v", got.offsets, wantOffset)
	}
	if got.records != 8 {
		t.Fatalf("restored %d records, want all 8 written (nothing compacted yet)", got.records)
	}
	for _, other := range []int32{0, 2} {
		if o := restoreAll(ctx, t, cl, other); o.records != 0 {
			t.Fatalf("partition %d restored %v; every record was written to partition %d explicitly", other, o.latest, part)
		}
	}

	// A write during Restore lands past the end taken at its start.
	var seen []string
	_, err = cl.Restore(ctx, part, func(key, value []byte, _ int64) error {
		seen = append(seen, string(key)+"="+string(value))
		if len(seen) == 1 {
			if _, err := p.ProduceToPartitions(ctx, []Message{kv(topic, part, "erin", "e1")}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Restore with a concurrent write: %v", err)
	}
	if len(seen) != 8 || strings.Contains(strings.Join(seen, ","), "erin") {
		t.Fatalf("Restore read %v; want the 8 records that existed when it began, not erin", seen)
	}
	if got := restoreAll(ctx, t, cl, part); got.latest["erin"] != "e1" {
		t.Fatalf("a later Restore misses erin: %v", got.latest)
	}

	// fn's error stops the restore and comes back wrapped, naming the topic,
	// partition and offset but not the key (a student id: the error is logged).
	boom := errors.New("bad state record")
	_, err = cl.Restore(ctx, part, func([]byte, []byte, int64) error { return boom })
	where := fmt.Sprintf("%s[%d]: the record at offset %d", topic, part, firstOffset)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), where) || strings.Contains(err.Error(), "alice") {
		t.Fatalf("Restore with a failing fn = %v, want the fn's error naming %q and no key", err, where)
	}
}

// TestChangelogFetchByOffset: Fetch returns exactly the record at an
// offset; an offset past the end is ErrRecordGone.
func TestChangelogFetchByOffset(t *testing.T) {
	client := brokerConfig(t)
	ctx := testCtx(t, 60*time.Second)
	topic := uniqueName(t, "state")
	if err := EnsureCompactedTopics(ctx, client, 2, topic); err != nil {
		t.Fatal(err)
	}
	p, err := NewProducer(client)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	msgs := []Message{kv(topic, 1, "s1", "v1"), kv(topic, 1, "s2", "v2"), kv(topic, 1, "s1", "v3"), kv(topic, 0, "s9", "v9")}
	offsets, err := p.ProduceToPartitions(ctx, msgs)
	if err != nil {
		t.Fatal(err)
	}
	cl := newTestChangelog(t, client, topic)
	for i, m := range msgs {
		key, value, err := cl.Fetch(ctx, m.Partition, offsets[i])
		if err != nil {
			t.Fatalf("Fetch(%d, %d): %v", m.Partition, offsets[i], err)
		}
		if string(key) != string(m.Key) || string(value) != string(m.Value) {
			t.Fatalf("Fetch(%d, %d) = %s=%s, want %s=%s", m.Partition, offsets[i], key, value, m.Key, m.Value)
		}
	}
	for _, off := range []int64{offsets[2] + 1, 1 << 40, -1} {
		if _, _, err := cl.Fetch(ctx, 1, off); !errors.Is(err, ErrRecordGone) {
			t.Fatalf("Fetch(1, %d) past the end = %v, want ErrRecordGone", off, err)
		}
	}
}

// TestChangelogRestoreReadCommitted: states written by a Transactor are
// restored only once committed: an aborted transaction's are never seen (nor
// fetched by offset), and Restore waits while a transaction below its end is
// open.
func TestChangelogRestoreReadCommitted(t *testing.T) {
	client := brokerConfig(t)
	ctx := testCtx(t, 120*time.Second)
	in, topic := uniqueName(t, "in"), uniqueName(t, "state")
	if err := EnsureTopics(ctx, client, 1, in); err != nil {
		t.Fatal(err)
	}
	if err := EnsureChangelogTopic(ctx, client, topic, in); err != nil {
		t.Fatal(err)
	}
	produceValues(ctx, t, client, in, "e0", "e1", "e2")
	tx := newTestTransactor(t, TransactConfig{
		Consumer:           ConsumerConfig{Client: client, Group: uniqueName(t, "group"), Topics: []string{in}},
		TransactionalID:    uniqueName(t, "txid"),
		TransactionTimeout: 30 * time.Second,
	})
	cl := newTestChangelog(t, client, topic)

	// cycle polls the three events and writes one state per event in a
	// transaction, returning the changelog offsets.
	cycle := func(state string) []int64 {
		t.Helper()
		var msgs []Message
		for len(msgs) < 3 {
			got, err := tx.Poll(ctx)
			if err != nil {
				t.Fatalf("Poll: %v", err)
			}
			msgs = append(msgs, got...)
		}
		var states []Message
		for _, m := range msgs {
			states = append(states, kv(topic, m.Partition, "student-"+string(m.Value), state))
		}
		offsets, err := tx.ProduceToPartitions(ctx, states)
		if err != nil {
			t.Fatalf("ProduceToPartitions in a transaction: %v", err)
		}
		return offsets
	}

	aborted := cycle("aborted")
	if err := tx.End(ctx, false); err != nil {
		t.Fatalf("End(abort): %v", err)
	}
	for _, off := range aborted {
		if _, _, err := cl.Fetch(ctx, 0, off); !errors.Is(err, ErrRecordGone) {
			t.Fatalf("Fetch of aborted offset %d = %v, want ErrRecordGone", off, err)
		}
	}
	if got := restoreAll(ctx, t, cl, 0); got.records != 0 {
		t.Fatalf("restored %v from an aborted transaction, want nothing", got.latest)
	}

	committed := cycle("committed")
	// Open transaction below the end: Restore must not finish without it.
	short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	_, err := cl.Restore(short, 0, func([]byte, []byte, int64) error { return nil })
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Restore during an open transaction = %v; want it to wait (until ctx ended) for the transaction", err)
	}
	for {
		err := tx.End(ctx, true)
		if err == nil {
			break
		}
		t.Fatalf("End(commit): %v", err)
	}
	got := restoreAll(ctx, t, cl, 0)
	want := map[string]string{"student-e0": "committed", "student-e1": "committed", "student-e2": "committed"}
	if !maps.Equal(got.latest, want) || got.records != 3 {
		t.Fatalf("restored %v (%d records), want only the committed states %v", got.latest, got.records, want)
	}
	for _, off := range committed {
		if _, v, err := cl.Fetch(ctx, 0, off); err != nil || string(v) != "committed" {
			t.Fatalf("Fetch(0, %d) = %q, %v; want the committed state", off, v, err)
		}
	}
}

// TestCheckChangelogTopic: the startup check names both topics, the counts
// and the fix for each way the changelog can fail to fit the input.
func TestCheckChangelogTopic(t *testing.T) {
	client := brokerConfig(t)
	ctx := testCtx(t, 90*time.Second)
	in := uniqueName(t, "in")
	if err := EnsureTopics(ctx, client, 3, in); err != nil {
		t.Fatal(err)
	}
	fewer, deleting, fine := uniqueName(t, "fewer"), uniqueName(t, "deleting"), uniqueName(t, "fine")
	both := uniqueName(t, "both")
	if err := EnsureCompactedTopics(ctx, client, 2, fewer); err != nil {
		t.Fatal(err)
	}
	if err := EnsureTopics(ctx, client, 3, deleting); err != nil {
		t.Fatal(err)
	}
	compactDelete := "compact,delete"
	if err := ensureTopics(ctx, client, 3, map[string]*string{"cleanup.policy": &compactDelete}, both); err != nil {
		t.Fatal(err)
	}
	if err := EnsureChangelogTopic(ctx, client, fine, in); err != nil {
		t.Fatalf("EnsureChangelogTopic: %v", err)
	}
	waitForTopics(ctx, t, client, fewer, deleting, both)
	for _, tc := range []struct {
		name, changelog, input string
		want                   []string // substrings of the error; nil: no error
	}{
		{"matching compacted changelog", fine, in, nil},
		{"partition counts differ", fewer, in, []string{fewer, in, "has 2 partitions", "has 3", "recreate the changelog with 3 partitions"}},
		{"not compacted", deleting, in, []string{deleting, "cleanup.policy=delete", "cleanup.policy=compact"}},
		{"compacted and deleted", both, in, []string{both, "cleanup.policy=compact,delete", "compact alone"}},
		{"changelog missing", uniqueName(t, "missing"), in, []string{"does not exist", "3 partitions", in, "cleanup.policy=compact"}},
		{"input missing", fine, uniqueName(t, "noinput"), []string{"input topic", "does not exist"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckChangelogTopic(ctx, client, tc.changelog, tc.input)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("CheckChangelogTopic = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrChangelogMismatch) {
				t.Fatalf("CheckChangelogTopic = %v, want ErrChangelogMismatch", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	// Writing past the changelog's partitions fails clearly rather than
	// landing elsewhere.
	p, err := NewProducer(client)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	_, err = p.ProduceToPartitions(ctx, []Message{kv(fewer, 2, "alice", "a1")})
	if !errors.Is(err, ErrNoSuchPartition) || !strings.Contains(err.Error(), fewer) {
		t.Fatalf("ProduceToPartitions to partition 2 of a 2-partition topic = %v, want ErrNoSuchPartition naming the topic", err)
	}
}

// TestChangelogRestoreAfterCompaction lets the broker's log cleaner really
// compact overwritten states (short segments, eager cleaning), then checks
// that Restore still yields every key's latest value across the offset gaps
// compaction leaves, and that Fetch of a compacted-away offset is
// ErrRecordGone. The cleaner runs every 15 s by default, so this waits up to
// a minute for it.
func TestChangelogRestoreAfterCompaction(t *testing.T) {
	client := brokerConfig(t)
	ctx := testCtx(t, 120*time.Second)
	topic := uniqueName(t, "state")
	str := func(s string) *string { return &s }
	if err := ensureTopics(ctx, client, 1, map[string]*string{
		"cleanup.policy":            str("compact"),
		"segment.ms":                str("100"),
		"min.cleanable.dirty.ratio": str("0.01"),
		"min.compaction.lag.ms":     str("0"),
	}, topic); err != nil {
		t.Fatal(err)
	}
	p, err := NewProducer(client)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	keys := []string{"k0", "k1", "k2", "k3", "k4"}
	want := map[string]string{}
	var firstOffsets []int64
	for round := range 3 {
		var msgs []Message
		for _, k := range keys {
			v := fmt.Sprintf("%s-v%d", k, round)
			msgs = append(msgs, kv(topic, 0, k, v))
			want[k] = v
		}
		offsets, err := p.ProduceToPartitions(ctx, msgs)
		if err != nil {
			t.Fatal(err)
		}
		if round == 0 {
			firstOffsets = offsets
		}
	}
	written := int64(3 * len(keys))

	cl := newTestChangelog(t, client, topic)
	var got restored
	for compacted := false; !compacted; {
		// A write after segment.ms rolls the segment, making the
		// overwritten records cleanable.
		select {
		case <-ctx.Done():
			t.Fatalf("the log cleaner did not compact %s within the test's deadline (last restore: %d records)", topic, got.records)
		case <-time.After(time.Second):
		}
		if _, err := p.ProduceToPartitions(ctx, []Message{kv(topic, 0, "roll", "r")}); err != nil {
			t.Fatal(err)
		}
		written++
		want["roll"] = "r"
		got = restoreAll(ctx, t, cl, 0)
		compacted = got.records < written
	}
	if !maps.Equal(got.latest, want) {
		t.Fatalf("after compaction restored %v, want the latest value per key %v", got.latest, want)
	}
	if _, _, err := cl.Fetch(ctx, 0, firstOffsets[0]); !errors.Is(err, ErrRecordGone) {
		t.Fatalf("Fetch of compacted-away offset %d = %v, want ErrRecordGone", firstOffsets[0], err)
	}
	t.Logf("compaction left %d of %d records", got.records, written)
}

// waitForTopics waits until the broker's metadata shows the topics: a topic
// just created may take a moment to appear, and the checks under test would
// rightly call it missing.
func waitForTopics(ctx context.Context, t *testing.T, client ClientConfig, topics ...string) {
	t.Helper()
	for {
		counts, err := partitionCounts(ctx, client, topics...)
		if err != nil {
			t.Fatal(err)
		}
		if len(counts) == len(topics) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topics %v did not appear in the metadata (have %v)", topics, counts)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
