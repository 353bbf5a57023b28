package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Fetch limits. They bound what kgo buffers ahead of Read: one buffered
// fetch per broker connection, at most maxConcurrentFetches in flight, each
// at most fetchMaxBytes. A caller that stops calling Read therefore stops the
// fetching after roughly fetchMaxBytes × maxConcurrentFetches.
const (
	fetchMaxBytes          = 8 << 20
	fetchMaxPartitionBytes = 2 << 20
	maxConcurrentFetches   = 2
	commitTimeout          = 10 * time.Second
)

// ConsumerConfig configures a group consumer.
type ConsumerConfig struct {
	Client ClientConfig
	Group  string
	Topics []string
	// MaxPollRecords bounds one poll, and so Read's local buffer; 0 means
	// DefaultMaxPollRecords.
	MaxPollRecords int
	// ReadCommitted skips records of aborted transactions (and waits for open
	// ones); set it when the input is written transactionally.
	ReadCommitted bool
	// InstanceID, when set, makes this a static member: a restart with the
	// same id within the session timeout gets its partitions back without a
	// rebalance. It must be unique per worker.
	InstanceID string
	// CommitInterval is how often acked offsets are committed; 0 means
	// DefaultCommitInterval. A crash redelivers at most this much acked work.
	CommitInterval time.Duration
	// OnAssigned, when set, is called with newly assigned partitions before
	// any of their records is fetched; it may block (restore state there).
	// An error stops the consumer: Read returns it. OnRevoked, when set, is
	// called for partitions taken away (revoked or lost). assignment.go has
	// the event order. Both serve Consumer and Transactor.
	OnAssigned PartitionsFunc
	OnRevoked  PartitionsFunc
}

func (c ConsumerConfig) maxPollRecords() int {
	if c.MaxPollRecords == 0 {
		return DefaultMaxPollRecords
	}
	return c.MaxPollRecords
}

func (c ConsumerConfig) commitInterval() time.Duration {
	if c.CommitInterval == 0 {
		return DefaultCommitInterval
	}
	return c.CommitInterval
}

// consumerOpts are the fetch and group options shared by Consumer and
// Transactor.
func (c ConsumerConfig) consumerOpts() []kgo.Opt {
	opts := []kgo.Opt{
		kgo.ConsumerGroup(c.Group),
		kgo.ConsumeTopics(c.Topics...),
		// A new group starts at the beginning: every interaction is scored.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxBytes(fetchMaxBytes),
		kgo.FetchMaxPartitionBytes(fetchMaxPartitionBytes),
		kgo.MaxConcurrentFetches(maxConcurrentFetches),
	}
	if c.ReadCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	if c.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(c.InstanceID))
	}
	return opts
}

// Consumer is an at-least-once group consumer: Read hands out one message
// and its ack, and an offset is committed only once it and every earlier
// offset of its partition were acked with nil.
//
// # Committing, and the event order it relies on
//
// kgo's autocommit is disabled; this package commits explicitly with
// CommitOffsetsSync, always under commitMu, from three places:
//
//   - a ticker every CommitInterval commits what the tracker says is
//     committable and not yet committed;
//   - OnPartitionsRevoked (a rebalance is taking partitions away) commits the
//     revoked partitions' committable offsets synchronously and then drops
//     their tracking, before returning; kgo lets the rebalance go on only
//     after the callback returns, so the next owner starts where we stopped;
//   - Close commits once more after waiting for outstanding acks.
//
// OnPartitionsLost (fenced: session timeout, unknown member) drops tracking
// without committing: we no longer own the partitions, and a commit would
// either fail or rewind the new owner. Acks that arrive later for a revoked
// or lost partition land on the dropped state and are ignored.
//
// Explicit commits of our own tracker state (rather than AutoCommitMarks and
// MarkCommitOffsets) keep one source of truth for "committable": kgo's marks
// would have to be kept in sync with the tracker and are only committed on
// kgo's schedule, which the revoke path must not wait for.
//
// Records travel: PollRecords → local buffer (untracked) → Read pops one and
// tracks it → caller acks. The client runs with BlockRebalanceOnPoll, and
// Read calls AllowRebalance right after moving a poll's records into the
// buffer, so a rebalance callback never runs between a poll returning and its
// records being buffered. The callbacks take bufMu, remove the revoked
// partitions' records from the buffer and drop their tracking while holding
// it; Read pops and tracks under the same lock. So a revoked partition's
// record is either tracked before the revoke (its ack is then ignored) or
// never handed out. Lock order: commitMu → bufMu → tracker.mu; nothing calls
// kgo while holding bufMu or tracker.mu.
type Consumer struct {
	cfg     ConsumerConfig
	log     *slog.Logger
	cl      *kgo.Client
	adm     *kadm.Client
	tracker *offsetTracker
	hooks   *partitionHooks
	first   *firstContact // security.go

	readMu sync.Mutex // one Read at a time: PollRecords/AllowRebalance pairs must not interleave

	bufMu    sync.Mutex
	buf      []*kgo.Record
	assigned map[topicPartition]bool // guarded by bufMu; for Lag

	commitMu sync.Mutex

	closed     atomic.Bool
	closeOnce  sync.Once
	closeErr   error
	stopCommit chan struct{}
	commitDone chan struct{}
}

// NewConsumer validates cfg, creates the client and starts joining the
// group in the background; the first Read waits for the assignment.
func NewConsumer(cfg ConsumerConfig) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts, err := cfg.Client.opts()
	if err != nil {
		return nil, err
	}
	c := &Consumer{
		cfg:        cfg,
		first:      &firstContact{brokers: cfg.Client.Brokers},
		log:        cfg.Client.logger(),
		tracker:    newOffsetTracker(),
		hooks:      newPartitionHooks(cfg),
		assigned:   make(map[topicPartition]bool),
		stopCommit: make(chan struct{}),
		commitDone: make(chan struct{}),
	}
	opts = append(opts, cfg.consumerOpts()...)
	opts = append(opts,
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(c.onAssigned),
		kgo.OnPartitionsRevoked(c.onRevoked),
		kgo.OnPartitionsLost(c.onLost),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: creating the consumer for group %q on topics %v: %w", cfg.Group, cfg.Topics, err)
	}
	c.cl = cl
	c.adm = kadm.NewClient(cl)
	go c.commitLoop(cfg.commitInterval())
	return c, nil
}

// Read returns the next message and its ack. Call ack exactly once: ack(nil)
// when every result derived from the message is durable, ack(err) when it was
// not processed (its offset is then never committed in this session, so it is
// delivered again after a restart or rebalance). Read polls the broker only
// when its buffer is empty, so a caller that stops reading stops fetching.
// Read is meant for one goroutine; concurrent calls are serialized.
func (c *Consumer) Read(ctx context.Context) (Message, func(error), error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	return c.readLocked(ctx)
}

// ReadBatch waits for the next message as Read does, then adds what is
// already fetched, up to max messages in all, without asking the broker
// again: a caller that applies messages in groups gets one as soon as there
// is work, as large as the fetch that brought it. Each message has its ack,
// with Read's contract.
func (c *Consumer) ReadBatch(ctx context.Context, max int) ([]Message, []func(error), error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	m, ack, err := c.readLocked(ctx)
	if err != nil {
		return nil, nil, err
	}
	msgs, acks := []Message{m}, []func(error){ack}
	for len(msgs) < max {
		m, ack, ok := c.pop()
		if !ok {
			break
		}
		msgs, acks = append(msgs, m), append(acks, ack)
	}
	return msgs, acks, nil
}

// readLocked is Read with readMu held.
func (c *Consumer) readLocked(ctx context.Context) (Message, func(error), error) {
	for {
		if c.closed.Load() {
			return Message{}, nil, ErrClosed
		}
		if err := c.hooks.failed(); err != nil {
			return Message{}, nil, err
		}
		if m, ack, ok := c.pop(); ok {
			return m, ack, nil
		}
		if err := ctx.Err(); err != nil {
			return Message{}, nil, err
		}
		if err := c.first.check(ctx, c.cl); err != nil {
			return Message{}, nil, err
		}
		fetches := c.cl.PollRecords(ctx, c.cfg.maxPollRecords())
		c.bufMu.Lock()
		fetches.EachRecord(func(r *kgo.Record) { c.buf = append(c.buf, r) })
		c.bufMu.Unlock()
		// Only now may a rebalance run: the records are in the buffer, where
		// a revoke callback can see and remove them.
		c.cl.AllowRebalance()

		if fetches.IsClientClosed() {
			return Message{}, nil, ErrClosed
		}
		err, fatal := fetchErrors(fetches, c.cfg.Group)
		if err == nil {
			continue
		}
		if fatal {
			return Message{}, nil, err
		}
		// Broker outages, leader moves and the like: kgo reconnects and
		// retries by itself, so keep reading rather than stop the worker.
		c.log.Warn("kafka: fetch error; retrying", "group", c.cfg.Group, "err", err)
		if c.buffered() == 0 {
			waitToRetry(ctx)
		}
	}
}

// pop hands out the oldest buffered record, tracking it under bufMu so a
// concurrent revoke either sees it tracked or removes it from the buffer.
func (c *Consumer) pop() (Message, func(error), bool) {
	c.bufMu.Lock()
	defer c.bufMu.Unlock()
	if len(c.buf) == 0 {
		return Message{}, nil, false
	}
	r := c.buf[0]
	c.buf[0] = nil
	c.buf = c.buf[1:]
	if len(c.buf) == 0 {
		c.buf = nil
	}
	ack := c.tracker.track(r.Topic, r.Partition, r.Offset, r.LeaderEpoch)
	return fromRecord(r), ack, true
}

// fetchRetryBackoff spaces out polls while the brokers are unreachable.
const fetchRetryBackoff = 500 * time.Millisecond

// fetchErrors turns a poll's errors into one error, or nil when there are
// none worth reporting (cancellation is the caller's ctx to report). fatal
// marks errors that retrying cannot fix: missing permissions.
func fetchErrors(fetches kgo.Fetches, group string) (err error, fatal bool) {
	var errs []error
	fetches.EachError(func(topic string, partition int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return
		}
		hint := "retrying"
		if errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.GroupAuthorizationFailed) ||
			errors.Is(err, kerr.TransactionalIDAuthorizationFailed) {
			hint = "grant this principal READ on the topic and the group (and WRITE on the transactional id)"
			fatal = true
		}
		errs = append(errs, fmt.Errorf("kafka: fetching topic %q partition %d for group %q: %w (%s)", topic, partition, group, err, hint))
	})
	return errors.Join(errs...), fatal
}

// waitToRetry pauses before the next poll after a transient fetch error.
func waitToRetry(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-time.After(fetchRetryBackoff):
	}
}

// buffered is how many fetched records Read has not handed out yet.
func (c *Consumer) buffered() int {
	c.bufMu.Lock()
	defer c.bufMu.Unlock()
	return len(c.buf)
}

func (c *Consumer) onAssigned(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
	c.bufMu.Lock()
	for topic, ps := range assigned {
		for _, p := range ps {
			c.assigned[topicPartition{topic, p}] = true
		}
	}
	c.bufMu.Unlock()
	c.hooks.assigned(ctx, assigned)
}

// onRevoked runs in kgo's group goroutine when a rebalance takes partitions
// away (and on Close, for all of them). Event order:
//  1. take commitMu, so no periodic commit of these partitions can land
//     after ours;
//  2. commit their acked prefixes synchronously (CommitOffsetsSync cannot be
//     cancelled by the rebalance);
//  3. under bufMu, drop their buffered records and their tracking: acks still
//     in flight for them are ignored from here on;
//  4. return; kgo then finishes the rebalance and the new owner fetches the
//     committed offsets.
//
// Acks that arrive between 2 and 3 are not committed; the new owner delivers
// those messages again (at-least-once).
func (c *Consumer) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	tps := flatten(revoked)
	if len(tps) == 0 {
		return
	}
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	only := make(map[topicPartition]bool, len(tps))
	for _, tp := range tps {
		only[tp] = true
	}
	cctx, cancel := context.WithTimeout(ctx, commitTimeout)
	err := c.commitLocked(cctx, only)
	cancel()
	if err != nil {
		c.log.Warn("kafka: committing revoked partitions failed; their new owner will redeliver from the last commit", "group", c.cfg.Group, "err", err)
	}
	c.forget(tps)
	c.hooks.revoked(ctx, revoked)
}

// onLost runs when the member was fenced: the partitions already belong to
// someone else, so nothing is committed; the tracking is dropped.
func (c *Consumer) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	tps := flatten(lost)
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.forget(tps)
	c.hooks.revoked(ctx, lost)
}

func (c *Consumer) forget(tps []topicPartition) {
	gone := make(map[topicPartition]bool, len(tps))
	for _, tp := range tps {
		gone[tp] = true
	}
	c.bufMu.Lock()
	defer c.bufMu.Unlock()
	kept := c.buf[:0]
	for _, r := range c.buf {
		if !gone[topicPartition{r.Topic, r.Partition}] {
			kept = append(kept, r)
		}
	}
	clear(c.buf[len(kept):])
	c.buf = kept
	for tp := range gone {
		delete(c.assigned, tp)
	}
	c.tracker.drop(tps)
}

func flatten(m map[string][]int32) []topicPartition {
	var tps []topicPartition
	for topic, ps := range m {
		for _, p := range ps {
			tps = append(tps, topicPartition{topic, p})
		}
	}
	return tps
}

func (c *Consumer) commitLoop(every time.Duration) {
	defer close(c.commitDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stopCommit:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
			if err := c.commit(ctx); err != nil {
				c.log.Warn("kafka: periodic offset commit failed; retrying at the next tick", "group", c.cfg.Group, "err", err)
			}
			cancel()
		}
	}
}

// commit commits every partition's acked prefix that is not committed yet.
func (c *Consumer) commit(ctx context.Context) error {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	return c.commitLocked(ctx, nil)
}

func (c *Consumer) commitLocked(ctx context.Context, only map[topicPartition]bool) error {
	points := c.tracker.committable(only)
	if len(points) == 0 {
		return nil
	}
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	byTP := make(map[topicPartition]commitPoint, len(points))
	for _, pt := range points {
		tp := pt.part.tp
		if offsets[tp.topic] == nil {
			offsets[tp.topic] = make(map[int32]kgo.EpochOffset)
		}
		offsets[tp.topic][tp.partition] = kgo.EpochOffset{Epoch: pt.epoch, Offset: pt.offset}
		byTP[tp] = pt
	}
	var errs []error
	c.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					errs = append(errs, fmt.Errorf("topic %q partition %d: %w", t.Topic, p.Partition, perr))
					continue
				}
				if pt, ok := byTP[topicPartition{t.Topic, p.Partition}]; ok {
					c.tracker.committed(pt)
				}
			}
		}
	})
	if len(errs) > 0 {
		return fmt.Errorf("kafka: committing offsets of group %q: %w", c.cfg.Group, errors.Join(errs...))
	}
	return nil
}

// Lag is the committed lag summed over the partitions assigned to this
// member: for each, the log end offset minus the group's committed offset
// (or minus the log start when nothing is committed yet). It costs a few
// admin requests; call it at metric-scrape rate, not per message.
func (c *Consumer) Lag(ctx context.Context) (int64, error) {
	c.bufMu.Lock()
	mine := make(map[topicPartition]bool, len(c.assigned))
	for tp := range c.assigned {
		mine[tp] = true
	}
	c.bufMu.Unlock()
	if len(mine) == 0 {
		return 0, nil
	}
	lags, err := c.adm.Lag(ctx, c.cfg.Group)
	if err != nil {
		return 0, fmt.Errorf("kafka: computing the lag of group %q: %w", c.cfg.Group, err)
	}
	gl, ok := lags[c.cfg.Group]
	if !ok {
		return 0, fmt.Errorf("kafka: computing the lag of group %q: the group was not described", c.cfg.Group)
	}
	if err := gl.Error(); err != nil {
		return 0, fmt.Errorf("kafka: computing the lag of group %q: %w", c.cfg.Group, err)
	}
	var total int64
	for topic, ps := range gl.Lag {
		for p, l := range ps {
			if !mine[topicPartition{topic, p}] {
				continue
			}
			if l.Err != nil {
				return 0, fmt.Errorf("kafka: computing the lag of group %q on topic %q partition %d: %w", c.cfg.Group, topic, p, l.Err)
			}
			if l.Lag > 0 {
				total += l.Lag
			}
		}
	}
	return total, nil
}

// Ping checks that a broker answers (for /readyz).
func (c *Consumer) Ping(ctx context.Context) error {
	if err := c.cl.Ping(ctx); err != nil {
		return pingError(c.cfg.Client.Brokers, fmt.Sprintf(" for group %q", c.cfg.Group), err)
	}
	return nil
}

// Close stops fetching, waits (bounded by ctx) until every handed-out
// message is acked, commits what is committable, leaves the group and closes
// the client. Messages still unacked when ctx ends are not committed and are
// delivered again to the next owner. Calling Close again returns the first
// result.
func (c *Consumer) Close(ctx context.Context) error {
	c.closeOnce.Do(func() { c.closeErr = c.close(ctx) })
	return c.closeErr
}

func (c *Consumer) close(ctx context.Context) error {
	c.closed.Store(true)
	c.cl.PauseFetchTopics(c.cfg.Topics...)
	var errs []error
	if err := c.tracker.waitIdle(ctx); err != nil {
		errs = append(errs, fmt.Errorf("kafka: closing group %q: %d messages were still unacknowledged (%w); they will be delivered again", c.cfg.Group, c.tracker.inFlight(), err))
	}
	close(c.stopCommit)
	<-c.commitDone

	// The final commit is worth a few seconds even when ctx is already done:
	// without it, everything acked since the last tick is processed twice.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	if ctx.Err() == nil {
		cctx, cancel = context.WithTimeout(ctx, commitTimeout)
	}
	if err := c.commit(cctx); err != nil {
		errs = append(errs, fmt.Errorf("kafka: final commit on close: %w", err))
	}
	cancel()

	// Leaving the group triggers onRevoked for the remaining partitions
	// (a no-op commit now) and waits for the leave to finish.
	done := make(chan struct{})
	go func() {
		c.cl.CloseAllowingRebalance()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("kafka: leaving group %q did not finish before the deadline (%w); the broker removes this member after the session timeout", c.cfg.Group, ctx.Err()))
	}
	return errors.Join(errs...)
}
