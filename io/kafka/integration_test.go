package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dktscore/dktscore/internal/kafkatest"
)

// Integration tests run against a real broker named by
// DKTSCORE_KAFKA_BROKERS (scripts/kafka-local start runs one); every test
// uses its own topics and groups so runs never see each other's data.

func brokerConfig(t *testing.T) ClientConfig {
	t.Helper()
	return ClientConfig{Brokers: kafkatest.Brokers(t), ClientID: "dktscore-test"}
}

// uniqueName returns a topic or group name no other test or run uses.
func uniqueName(t *testing.T, what string) string {
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return fmt.Sprintf("dktscore-test-%s-%s-%d", strings.ToLower(name), what, time.Now().UnixNano())
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func produceValues(ctx context.Context, t *testing.T, cfg ClientConfig, topic string, values ...string) {
	t.Helper()
	p, err := NewProducer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	for _, v := range values {
		if err := p.Produce(ctx, Message{Topic: topic, Key: []byte(v), Value: []byte(v), Headers: map[string][]byte{"src": []byte("test")}}); err != nil {
			t.Fatalf("producing %q: %v", v, err)
		}
	}
}

func newTestConsumer(t *testing.T, cfg ConsumerConfig) *Consumer {
	t.Helper()
	c, err := NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = c.Close(ctx) // idempotent; tests close explicitly where it matters
	})
	return c
}

type read struct {
	m   Message
	ack func(error)
}

func readN(ctx context.Context, t *testing.T, c *Consumer, n int) []read {
	t.Helper()
	var out []read
	for len(out) < n {
		m, ack, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("Read after %d of %d messages: %v", len(out), n, err)
		}
		out = append(out, read{m, ack})
	}
	return out
}

// firstValue returns the value of the next message a fresh consumer of the
// group reads.
// On a topic with several partitions an uncommitted message could also come
// after the marker, so once the marker is acked the group's lag over all
// partitions must fall to 0.
func firstValue(ctx context.Context, t *testing.T, cfg ConsumerConfig) string {
	t.Helper()
	cfg.CommitInterval = 50 * time.Millisecond
	c := newTestConsumer(t, cfg)
	r := readN(ctx, t, c, 1)[0]
	r.ack(nil)
	waitLagZero(ctx, t, c)
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return string(r.m.Value)
}

// waitLagZero waits up to 10 s for the periodic commit to bring c's lag to 0.
func waitLagZero(ctx context.Context, t *testing.T, c *Consumer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		lag, err := c.Lag(ctx)
		if err == nil && lag == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Lag = %d, %v; want 0 within 10s (something acked was not committed, or something was not acked)", lag, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func values(n int, prefix string) []string {
	var vs []string
	for i := range n {
		vs = append(vs, fmt.Sprintf("%s%03d", prefix, i))
	}
	return vs
}

// TestConsumeAckCloseCommits: produce N → read N and ack them out of order →
// Close → a new member of the group finds nothing left: the first message it
// reads is a marker produced after the close.
func TestConsumeAckCloseCommits(t *testing.T) {
	client := brokerConfig(t)
	ctx := testCtx(t, 90*time.Second)
	topic := uniqueName(t, "in")
	if err := EnsureTopics(ctx, client, 3, topic); err != nil {
		t.Fatal(err)
	}
	// Idempotent: a second call for an existing topic is fine.
	if err := EnsureTopics(ctx, client, 3, topic); err != nil {
		t.Fatalf("EnsureTopics on an existing topic: %v", err)
	}
	const n = 30
	produceValues(ctx, t, client, topic, values(n, "m")...)

	cfg := ConsumerConfig{Client: client, Group: uniqueName(t, "group"), Topics: []string{topic}, MaxPollRecords: 7, CommitInterval: 200 * time.Millisecond}
	c := newTestConsumer(t, cfg)
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	got := readN(ctx, t, c, n)
	var seen []string
	for _, r := range got {
		seen = append(seen, string(r.m.Value))
		if string(r.m.Headers["src"]) != "test" || r.m.Topic != topic {
			t.Fatalf("message %+v lost its topic or headers", r.m)
		}
	}
	slices.Sort(seen)
	if !slices.Equal(seen, values(n, "m")) {
		t.Fatalf("read %v, want every produced value once", seen)
	}
	if lag, err := c.Lag(ctx); err != nil || lag != n {
		t.Errorf("Lag before any ack = %d, %v; want %d (nothing committed yet)", lag, err, n)
	}
	// Ack newest first: nothing is committable until the oldest is acked.
	for i := len(got) - 1; i >= 0; i-- {
		got[i].ack(nil)
	}
	// The periodic commit catches up without a Close.
	waitLagZero(ctx, t, c)
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, _, err := c.Read(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close = %v, want ErrClosed", err)
	}

	// Lag 0 above already shows the commits landed; a new member reading
	// the marker first shows the group resumes after them.
	produceValues(ctx, t, client, topic, "marker")
	c2 := newTestConsumer(t, cfg)
	m, ack, err := c2.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ack(nil)
	if string(m.Value) != "marker" {
		t.Fatalf("new member read %q first, want the marker (earlier messages were committed)", m.Value)
	}
}

// TestAckGapRedelivers: ack every message but one (with an error, or never)
// → Close → a new member of the group starts again at the gap.
func TestAckGapRedelivers(t *testing.T) {
	client := brokerConfig(t)
	for _, tc := range []struct {
		name     string
		neverAck bool
	}{
		{name: "failed ack"},
		{name: "never acked", neverAck: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t, 90*time.Second)
			topic := uniqueName(t, "in")
			if err := EnsureTopics(ctx, client, 1, topic); err != nil {
				t.Fatal(err)
			}
			produceValues(ctx, t, client, topic, values(10, "m")...)
			cfg := ConsumerConfig{Client: client, Group: uniqueName(t, "group"), Topics: []string{topic}, CommitInterval: 100 * time.Millisecond}

			c := newTestConsumer(t, cfg)
			got := readN(ctx, t, c, 10)
			const gap = 4
			for i, r := range got {
				switch {
				case i != gap:
					r.ack(nil)
				case !tc.neverAck:
					r.ack(errors.New("sink failed"))
				}
			}
			closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
			if tc.neverAck {
				closeCtx, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
			}
			err := c.Close(closeCtx)
			cancel()
			if tc.neverAck {
				if err == nil || !strings.Contains(err.Error(), "1 messages were still unacknowledged") {
					t.Fatalf("Close with an unacked message = %v, want it reported", err)
				}
			} else if err != nil {
				t.Fatalf("Close: %v", err)
			} else if n := c.tracker.failedAcks(); n != 0 {
				t.Fatalf("%d failed acks tracked after close, want 0 (state dropped with the partitions)", n)
			}

			c2 := newTestConsumer(t, cfg)
			again := readN(ctx, t, c2, 10-gap)
			var vs []string
			for _, r := range again {
				vs = append(vs, string(r.m.Value))
				r.ack(nil)
			}
			if want := values(10, "m")[gap:]; !slices.Equal(vs, want) {
				t.Fatalf("redelivered %v, want %v (from the gap on)", vs, want)
			}
			if again[0].m.Offset != gap {
				t.Fatalf("first redelivered offset %d, want %d", again[0].m.Offset, gap)
			}
		})
	}
}

// drainCommitted writes a marker to topic (which must have one partition) and reads the topic from the start
// (read_committed or not) until it, returning the values before it, earlier
// markers left out.
func drainCommitted(ctx context.Context, t *testing.T, client ClientConfig, topic string, readCommitted bool) []string {
	t.Helper()
	marker := fmt.Sprintf("marker-%d", time.Now().UnixNano())
	produceValues(ctx, t, client, topic, marker)
	c := newTestConsumer(t, ConsumerConfig{Client: client, Group: uniqueName(t, "reader"), Topics: []string{topic}, ReadCommitted: readCommitted})
	var vs []string
	for {
		m, ack, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("reading %s after %v: %v", topic, vs, err)
		}
		ack(nil)
		switch v := string(m.Value); {
		case v == marker:
			return vs
		case !strings.HasPrefix(v, "marker-"): // earlier reads' markers
			vs = append(vs, v)
		}
	}
}

// transactCycle polls until it has n messages, produces one output per
// message and ends the transaction; it retries the whole cycle on
// ErrAborted, as a worker does.
func transactCycle(ctx context.Context, t *testing.T, tx *Transactor, out string, n int, commit bool) []Message {
	t.Helper()
	for {
		var msgs []Message
		for len(msgs) < n {
			got, err := tx.Poll(ctx)
			if err != nil {
				t.Fatalf("Poll after %d messages: %v", len(msgs), err)
			}
			msgs = append(msgs, got...)
		}
		for _, m := range msgs {
			if err := tx.Produce(ctx, Message{Topic: out, Key: m.Key, Value: append([]byte("out-"), m.Value...)}); err != nil {
				t.Fatalf("Produce: %v", err)
			}
		}
		err := tx.End(ctx, commit)
		if errors.Is(err, ErrAborted) {
			t.Log("transaction aborted by a rebalance; retrying")
			continue
		}
		if err != nil {
			t.Fatalf("End(%t): %v", commit, err)
		}
		return msgs
	}
}

func newTestTransactor(t *testing.T, cfg TransactConfig) *Transactor {
	t.Helper()
	tx, err := NewTransactor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = tx.Close(ctx)
	})
	return tx
}

// TestTransactorCommit: poll → produce → End(true); a read_committed reader
// sees each output once and the inputs are committed.
func TestTransactorCommit(t *testing.T) {
	client := brokerConfig(t)
	ctx := testCtx(t, 120*time.Second)
	in, out := uniqueName(t, "in"), uniqueName(t, "out")
	// Two input partitions put offsets of both in one transaction; one
	// output partition lets drainCommitted stop at its marker.
	if err := EnsureTopics(ctx, client, 2, in); err != nil {
		t.Fatal(err)
	}
	if err := EnsureTopics(ctx, client, 1, out); err != nil {
		t.Fatal(err)
	}
	const n = 5
	produceValues(ctx, t, client, in, values(n, "m")...)

	cfg := TransactConfig{
		Consumer:           ConsumerConfig{Client: client, Group: uniqueName(t, "group"), Topics: []string{in}},
		TransactionalID:    uniqueName(t, "txid"),
		TransactionTimeout: 20 * time.Second,
	}
	tx := newTestTransactor(t, cfg)
	transactCycle(ctx, t, tx, out, n, true)
	if err := tx.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}

	got := drainCommitted(ctx, t, client, out, true)
	slices.Sort(got)
	want := values(n, "out-m")
	if !slices.Equal(got, want) {
		t.Fatalf("read_committed output = %v, want %v exactly once", got, want)
	}
	// The inputs' offsets were committed in the transaction.
	produceValues(ctx, t, client, in, "marker")
	if v := firstValue(ctx, t, cfg.Consumer); v != "marker" {
		t.Fatalf("the group's next input is %q, want the marker (inputs committed)", v)
	}
}

// TestTransactorAbort: End(false) hides the outputs from read_committed
// readers and delivers the inputs again; committing the retry shows each
// output once.
func TestTransactorAbort(t *testing.T) {
	client := brokerConfig(t)
	ctx := testCtx(t, 120*time.Second)
	in, out := uniqueName(t, "in"), uniqueName(t, "out")
	if err := EnsureTopics(ctx, client, 1, in, out); err != nil {
		t.Fatal(err)
	}
	const n = 3
	produceValues(ctx, t, client, in, values(n, "m")...)

	cfg := TransactConfig{
		Consumer:        ConsumerConfig{Client: client, Group: uniqueName(t, "group"), Topics: []string{in}},
		TransactionalID: uniqueName(t, "txid"),
	}
	tx := newTestTransactor(t, cfg)
	first := transactCycle(ctx, t, tx, out, n, false)
	second := transactCycle(ctx, t, tx, out, n, true)
	offsets := func(ms []Message) []int64 {
		var os []int64
		for _, m := range ms {
			os = append(os, m.Offset)
		}
		return os
	}
	if !slices.Equal(offsets(first), offsets(second)) {
		t.Fatalf("after abort the inputs came back at offsets %v, want %v", offsets(second), offsets(first))
	}
	if err := tx.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}

	committed := drainCommitted(ctx, t, client, out, true)
	if want := values(n, "out-m"); !slices.Equal(committed, want) {
		t.Fatalf("read_committed output = %v, want %v (aborted outputs invisible)", committed, want)
	}
	// read_uncommitted sees the aborted attempt too, proving it was written.
	if all := drainCommitted(ctx, t, client, out, false); len(all) != 2*n {
		t.Fatalf("read_uncommitted output = %v, want the aborted and the committed outputs", all)
	}
}

func TestProducerRejectsOversizedMessage(t *testing.T) {
	client := brokerConfig(t)
	ctx := testCtx(t, 30*time.Second)
	p, err := NewProducer(client)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	err = p.Produce(ctx, Message{Topic: uniqueName(t, "big"), Value: make([]byte, 2<<20)})
	if !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("Produce(2 MiB) = %v, want ErrMessageTooLarge", err)
	}
}

// TestProduceAllAndReadBatch: ProduceAll writes a slice of keyed messages in
// one call; ReadBatch hands them out in groups of at most max, each message
// once and with its own ack, and the acks commit as Read's do.
func TestProduceAllAndReadBatch(t *testing.T) {
	client := brokerConfig(t)
	ctx := testCtx(t, 90*time.Second)
	topic := uniqueName(t, "in")
	if err := EnsureTopics(ctx, client, 2, topic); err != nil {
		t.Fatal(err)
	}
	p, err := NewProducer(client)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	const n = 40
	var msgs []Message
	for _, v := range values(n, "b") {
		msgs = append(msgs, Message{Topic: topic, Key: []byte(v), Value: []byte(v)})
	}
	if err := p.ProduceAll(ctx, msgs); err != nil {
		t.Fatalf("ProduceAll: %v", err)
	}
	// One record over the limit fails the call before anything is sent.
	big := append(slices.Clone(msgs[:1]), Message{Topic: topic, Value: make([]byte, 2<<20)})
	if err := p.ProduceAll(ctx, big); !errors.Is(err, ErrMessageTooLarge) {
		t.Fatalf("ProduceAll with a 2 MiB record = %v, want ErrMessageTooLarge", err)
	}

	cfg := ConsumerConfig{Client: client, Group: uniqueName(t, "group"), Topics: []string{topic}, CommitInterval: 100 * time.Millisecond}
	c := newTestConsumer(t, cfg)
	var seen []string
	for len(seen) < n {
		got, acks, err := c.ReadBatch(ctx, 7)
		if err != nil {
			t.Fatalf("ReadBatch after %d messages: %v", len(seen), err)
		}
		if len(got) == 0 || len(got) > 7 || len(acks) != len(got) {
			t.Fatalf("ReadBatch gave %d messages and %d acks, want 1 to 7 of each", len(got), len(acks))
		}
		for i, m := range got {
			seen = append(seen, string(m.Value))
			acks[i](nil)
		}
	}
	slices.Sort(seen)
	if !slices.Equal(seen, values(n, "b")) {
		t.Fatalf("read %v, want every produced value once", seen)
	}
	waitLagZero(ctx, t, c)
}

// TestRevokeCommits: member A acks everything but never reaches a periodic
// commit; member B joins, the rebalance revokes a partition from A, and A's
// revoke callback must commit it so B finds nothing to redo.
func TestRevokeCommits(t *testing.T) {
	client := brokerConfig(t)
	ctx := testCtx(t, 90*time.Second)
	topic := uniqueName(t, "in")
	if err := EnsureTopics(ctx, client, 2, topic); err != nil {
		t.Fatal(err)
	}
	const n = 20
	produceValues(ctx, t, client, topic, values(n, "m")...)
	cfg := ConsumerConfig{Client: client, Group: uniqueName(t, "group"), Topics: []string{topic}, CommitInterval: time.Hour}

	a := newTestConsumer(t, cfg)
	for _, r := range readN(ctx, t, a, n) {
		r.ack(nil)
	}
	b := newTestConsumer(t, cfg)
	for {
		b.bufMu.Lock()
		assigned := len(b.assigned)
		b.bufMu.Unlock()
		if assigned > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("member B was never assigned a partition")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if lag, err := b.Lag(ctx); err != nil || lag != 0 {
		t.Fatalf("B's lag after the rebalance = %d, %v; want 0 (A committed on revoke)", lag, err)
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if m, _, err := b.Read(rctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("B read %q (err %v); want nothing: A's work was committed on revoke", m.Value, err)
	}
}
