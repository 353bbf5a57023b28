package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TransactConfig configures exactly-once consume→process→produce.
type TransactConfig struct {
	Consumer ConsumerConfig
	// TransactionalID identifies this worker's producer across restarts so
	// the broker can fence a zombie predecessor; stable per worker, unique
	// among workers.
	TransactionalID string
	// TransactionTimeout is how long the broker lets a transaction stay open
	// before aborting it; 0 means kgo's default (40s). Keep it above the
	// longest Poll→End cycle.
	TransactionTimeout time.Duration
}

// Transactor runs Kafka transactions over a group consumer with
// kgo.GroupTransactSession. One cycle is: Poll → Produce every output → End.
// End(ctx, true) commits the produced records and the polled offsets in one
// transaction, so a read_committed reader sees the outputs exactly once.
//
// # Event order on a rebalance
//
// The session wraps the revoke and lost callbacks: when partitions are taken
// away mid-cycle it marks the transaction as failed; the next End then aborts
// instead of committing (the outputs vanish for read_committed readers),
// rewinds the fetch positions to the last committed offsets, and this type
// returns ErrAborted. The messages are consumed again, by us or by their new
// owner, so the caller simply continues with the next Poll. Rebalances are
// never blocked, so a slow batch cannot get the member kicked out.
//
// A Transactor is used from one goroutine: Poll, Produce and End must not
// overlap (kgo forbids producing concurrently with beginning or ending a
// transaction); the mutex turns misuse into waiting rather than corruption.
type Transactor struct {
	cfg      TransactConfig
	s        *kgo.GroupTransactSession
	maxBytes int32
	hooks    *partitionHooks
	first    firstContact // security.go

	mu     sync.Mutex
	inTxn  bool
	closed bool
}

// NewTransactor validates cfg and creates the session. Consumption is
// always read_committed here: exactly-once processing must not see the
// records of aborted transactions upstream.
func NewTransactor(cfg TransactConfig) (*Transactor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts, err := cfg.Consumer.Client.opts()
	if err != nil {
		return nil, err
	}
	cc := cfg.Consumer
	cc.ReadCommitted = true
	opts = append(opts, cc.consumerOpts()...)
	opts = append(opts, producerOpts(cfg.Consumer.Client)...)
	opts = append(opts, kgo.TransactionalID(cfg.TransactionalID))
	if cfg.TransactionTimeout > 0 {
		opts = append(opts, kgo.TransactionTimeout(cfg.TransactionTimeout))
	}
	hooks := newPartitionHooks(cfg.Consumer)
	opts = append(opts, hooks.transactorOpts()...)
	s, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: creating the transactional session %q for group %q: %w", cfg.TransactionalID, cfg.Consumer.Group, err)
	}
	return &Transactor{cfg: cfg, s: s, maxBytes: cfg.Consumer.Client.maxMessageBytes(), hooks: hooks, first: firstContact{brokers: cfg.Consumer.Client.Brokers}}, nil
}

// begin opens a transaction if none is open; t.mu is held.
func (t *Transactor) begin() error {
	if t.closed {
		return ErrClosed
	}
	if t.inTxn {
		return nil
	}
	if err := t.s.Begin(); err != nil {
		return fmt.Errorf("kafka: beginning a transaction (transactional id %q): %w; the producer is unusable, Close and restart the worker", t.cfg.TransactionalID, err)
	}
	t.inTxn = true
	return nil
}

// Poll begins a transaction if none is open and returns the next fetched
// messages, at most ConsumerConfig.MaxPollRecords. It waits for at least one
// message; when ctx ends first it returns no messages and ctx's error. A
// transient fetch error (broker down) is logged and gives an empty poll, so
// callers poll again; only errors retrying cannot fix are returned. Every
// message polled before End belongs to the transaction End finishes.
func (t *Transactor) Poll(ctx context.Context) ([]Message, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.first.check(ctx, t.s.Client()); err != nil {
		return nil, err
	}
	if err := t.begin(); err != nil {
		return nil, err
	}
	fetches := t.s.PollRecords(ctx, t.cfg.Consumer.maxPollRecords())
	if fetches.IsClientClosed() {
		return nil, ErrClosed
	}
	if err := t.hooks.failed(); err != nil {
		return nil, err // the caller ends the transaction with an abort
	}
	var msgs []Message
	fetches.EachRecord(func(r *kgo.Record) { msgs = append(msgs, fromRecord(r)) })
	if len(msgs) > 0 {
		return msgs, nil
	}
	if err, fatal := fetchErrors(fetches, t.cfg.Consumer.Group); err != nil {
		if fatal {
			return nil, err
		}
		// Broker outages and leader moves: kgo reconnects by itself. Report
		// an empty poll so the caller polls again, as Consumer.Read does.
		t.cfg.Consumer.Client.logger().Warn("kafka: fetch error; retrying", "group", t.cfg.Consumer.Group, "err", err)
		waitToRetry(ctx)
	}
	return nil, ctx.Err()
}

// Produce writes m inside the current transaction (beginning one if
// needed) and returns once the broker has it; it becomes visible to
// read_committed readers only when End commits. Partition and Offset of m are
// ignored.
func (t *Transactor) Produce(ctx context.Context, m Message) error {
	return t.ProduceAll(ctx, []Message{m})
}

// ProduceAll writes msgs inside the current transaction, sent together, like
// Producer.ProduceAll; they become visible when End commits.
func (t *Transactor) ProduceAll(ctx context.Context, msgs []Message) error {
	records, err := toRecords(msgs, t.maxBytes)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.begin(); err != nil {
		return err
	}
	_, err = produceRecords(msgs, records, t.maxBytes, t.s.ProduceSync(ctx, records...))
	return err
}

// End finishes the open transaction. commit=true commits the produced
// records and the polled offsets atomically; it returns ErrAborted when a
// rebalance forced an abort instead (continue with Poll). commit=false aborts:
// the outputs are discarded and the polled messages are delivered again by
// the next Poll. Any other error leaves the producer unusable: Close and
// restart. End without an open transaction is a no-op.
func (t *Transactor) End(ctx context.Context, commit bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.end(ctx, commit)
}

func (t *Transactor) end(ctx context.Context, commit bool) error {
	if !t.inTxn {
		return nil
	}
	t.inTxn = false
	committed, err := t.s.End(ctx, kgo.TransactionEndTry(commit))
	if err != nil {
		return fmt.Errorf("kafka: ending the transaction (transactional id %q, commit=%t): %w; the producer may be fenced by another worker with the same TransactionalID, or the broker unreachable: Close and restart", t.cfg.TransactionalID, commit, err)
	}
	if commit && !committed {
		return ErrAborted
	}
	return nil
}

// Close aborts an open transaction (its messages are delivered again), leaves
// the group and closes the client, bounded by ctx.
func (t *Transactor) Close(ctx context.Context) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	var errs []error
	if err := t.end(ctx, false); err != nil {
		errs = append(errs, err)
	}
	t.closed = true
	t.mu.Unlock()

	done := make(chan struct{})
	go func() {
		t.s.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("kafka: leaving group %q did not finish before the deadline (%w); the broker removes this member after the session timeout", t.cfg.Consumer.Group, ctx.Err()))
	}
	return errors.Join(errs...)
}
