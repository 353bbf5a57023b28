package kafka

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hookRecorder is a ConsumerConfig.OnAssigned/OnRevoked pair that blocks
// in OnAssigned until released (standing in for a changelog restore) and
// records what it was told.
type hookRecorder struct {
	release  chan struct{}
	released atomic.Bool
	fail     error

	mu       sync.Mutex
	assigned map[int32]bool
	revoked  map[int32]bool
}

func newHookRecorder(fail error) *hookRecorder {
	return &hookRecorder{release: make(chan struct{}), fail: fail, assigned: map[int32]bool{}, revoked: map[int32]bool{}}
}

func (h *hookRecorder) onAssigned(ctx context.Context, m map[string][]int32) error {
	select {
	case <-h.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ps := range m {
		for _, p := range ps {
			h.assigned[p] = true
		}
	}
	return h.fail
}

func (h *hookRecorder) onRevoked(_ context.Context, m map[string][]int32) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ps := range m {
		for _, p := range ps {
			h.revoked[p] = true
		}
	}
	return nil
}

// releaseLater lets OnAssigned finish after a pause, long enough that a
// consumer handing out records before its partitions were prepared would
// do so within it. The assertions are about order, not time.
func (h *hookRecorder) releaseLater(t *testing.T) {
	timer := time.AfterFunc(time.Second, func() {
		h.released.Store(true)
		close(h.release)
	})
	t.Cleanup(func() { timer.Stop() })
}

func (h *hookRecorder) partitions(which map[int32]bool) []int32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Sorted(maps.Keys(which))
}

// TestConsumerPartitionHooks: no record is handed out before OnAssigned for
// its partition returned; Close revokes every partition through OnRevoked;
// an OnAssigned error stops Read with that error.
func TestConsumerPartitionHooks(t *testing.T) {
	client := brokerConfig(t)
	ctx := testCtx(t, 90*time.Second)
	topic := uniqueName(t, "in")
	if err := EnsureTopics(ctx, client, 2, topic); err != nil {
		t.Fatal(err)
	}
	const n = 10
	produceValues(ctx, t, client, topic, values(n, "m")...)

	h := newHookRecorder(nil)
	cfg := ConsumerConfig{Client: client, Group: uniqueName(t, "group"), Topics: []string{topic}, OnAssigned: h.onAssigned, OnRevoked: h.onRevoked}
	c := newTestConsumer(t, cfg)
	h.releaseLater(t)
	for i, r := range readN(ctx, t, c, n) {
		if !h.released.Load() {
			t.Fatalf("message %d (partition %d) was handed out while OnAssigned was still running", i, r.m.Partition)
		}
		if got := h.partitions(h.assigned); !slices.Contains(got, r.m.Partition) {
			t.Fatalf("message from partition %d, but OnAssigned was told only of %v", r.m.Partition, got)
		}
		r.ack(nil)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := h.partitions(h.revoked); !slices.Equal(got, []int32{0, 1}) {
		t.Fatalf("OnRevoked was told of %v on Close, want [0 1]", got)
	}

	boom := errors.New("changelog unreadable")
	bad := newHookRecorder(boom)
	close(bad.release)
	cfg.Group, cfg.OnAssigned, cfg.OnRevoked = uniqueName(t, "group2"), bad.onAssigned, nil
	c2 := newTestConsumer(t, cfg)
	if m, _, err := c2.Read(ctx); !errors.Is(err, boom) {
		t.Fatalf("Read after a failed OnAssigned = %q, %v; want the hook's error and no message", m.Value, err)
	}
}

// TestTransactorPartitionHooks: Poll returns no record before OnAssigned
// for its partition returned, and Close revokes through OnRevoked.
func TestTransactorPartitionHooks(t *testing.T) {
	client := brokerConfig(t)
	ctx := testCtx(t, 90*time.Second)
	topic := uniqueName(t, "in")
	if err := EnsureTopics(ctx, client, 2, topic); err != nil {
		t.Fatal(err)
	}
	const n = 6
	produceValues(ctx, t, client, topic, values(n, "m")...)

	h := newHookRecorder(nil)
	tx := newTestTransactor(t, TransactConfig{
		Consumer:        ConsumerConfig{Client: client, Group: uniqueName(t, "group"), Topics: []string{topic}, OnAssigned: h.onAssigned, OnRevoked: h.onRevoked},
		TransactionalID: uniqueName(t, "txid"),
	})
	h.releaseLater(t)
	var got int
	for got < n {
		msgs, err := tx.Poll(ctx)
		if err != nil {
			t.Fatalf("Poll after %d messages: %v", got, err)
		}
		for _, m := range msgs {
			if !h.released.Load() {
				t.Fatalf("Poll returned partition %d's message while OnAssigned was still running", m.Partition)
			}
		}
		got += len(msgs)
	}
	if err := tx.End(ctx, true); err != nil && !errors.Is(err, ErrAborted) {
		t.Fatalf("End: %v", err)
	}
	if err := tx.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if a, r := h.partitions(h.assigned), h.partitions(h.revoked); !slices.Equal(a, []int32{0, 1}) || !slices.Equal(r, []int32{0, 1}) {
		t.Fatalf("hooks saw assigned %v, revoked %v; want [0 1] for both", a, r)
	}
}
