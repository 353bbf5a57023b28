package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DefaultChangelogTopic is event mode's state topic when
// DKTSCORE_KAFKA_CHANGELOG_TOPIC is unset.
const DefaultChangelogTopic = "dkt.state"

// Sentinel errors of the changelog.
var (
	// ErrChangelogMismatch: the changelog topic cannot serve the input topic
	// (missing, another partition count, or not compacted). Startup fails
	// with it; the message names both topics and the fix.
	ErrChangelogMismatch = errors.New("kafka: changelog topic does not fit the input topic")
	// ErrRecordGone: Fetch found no record at the offset: it was compacted
	// away (a newer value for its key was written after it, which only a
	// second writer of the partition can cause), deleted by retention, or the
	// offset is past the end.
	ErrRecordGone = errors.New("kafka: no changelog record at that offset")
)

// Changelog reads a compacted changelog topic partition by partition, outside
// any consumer group: Restore reads a partition from its start to its end as
// of the call, Fetch reads one record by offset. It issues its own Fetch
// requests to each partition's leader (processed by kgo.ProcessFetchPartition)
// so it knows exactly how far it has read, even when the tail of the log holds
// no visible record (aborted transactions, transaction markers, batches
// emptied by compaction), which a group-less kgo consumer would not tell it.
//
// Both read read_committed: records of aborted transactions are skipped, and
// reading waits while a transaction below the end is still open (the Fetch
// response stops at the last stable offset). That wait is deliberate: an open
// transaction is the previous owner's last states and input offsets; if it
// commits, its offsets say its events are done, so its states must be seen.
// It ends by commit, abort, or the broker's transaction timeout.
//
// Safe for concurrent use.
type Changelog struct {
	topic string
	cl    *kgo.Client
	adm   *kadm.Client
	log   func(msg string, args ...any)

	mu      sync.Mutex
	id      kadm.TopicID
	leaders map[int32]int32 // partition → leader broker; refreshed on errors
}

// NewChangelog validates cfg and connects lazily. topic is the changelog
// topic (DefaultChangelogTopic unless configured).
func NewChangelog(cfg ClientConfig, topic string) (*Changelog, error) {
	var ps []error
	ps = append(ps, cfg.problems()...)
	if strings.TrimSpace(topic) == "" {
		ps = append(ps, fmt.Errorf("the changelog topic (DKTSCORE_KAFKA_CHANGELOG_TOPIC) is empty: name it, e.g. %s", DefaultChangelogTopic))
	}
	if err := joinProblems(ps); err != nil {
		return nil, err
	}
	opts, err := cfg.opts()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka: creating the changelog reader for topic %q on brokers %v: %w", topic, cfg.Brokers, err)
	}
	return &Changelog{topic: topic, cl: cl, adm: kadm.NewClient(cl), log: cfg.logger().Warn}, nil
}

// Topic is the changelog topic's name.
func (c *Changelog) Topic() string { return c.topic }

// Close closes the connections; a restore or fetch in flight fails. It
// takes a context, as every source and sink does, though nothing waits.
func (c *Changelog) Close(context.Context) error {
	c.cl.Close()
	return nil
}

// Fetch limits for one request. A batch larger than the partition limit is
// still returned whole (the broker always returns the first batch), so these
// bound memory per request, not the largest record readable.
const (
	changelogFetchMaxBytes     = 16 << 20
	changelogFetchPartMaxBytes = 8 << 20
	changelogFetchMaxWait      = 500 * time.Millisecond
	changelogRetryBackoff      = 250 * time.Millisecond
)

// Restore calls fn for every committed record of the changelog partition, in
// offset order, from the log start up to the high watermark read when Restore
// begins; records appended after that are not read. A compacted topic may
// still hold several values of one key (compaction is lazy), so fn must let
// later values replace earlier ones; value is nil for a tombstone (a deletion
// marker). fn's error stops the restore and is returned wrapped. Restore
// returns the number of records passed to fn.
//
// Restore blocks while an open transaction lies below the end (see
// Changelog), bounded by ctx.
func (c *Changelog) Restore(ctx context.Context, partition int32, fn func(key, value []byte, offset int64) error) (int64, error) {
	var (
		offset  int64 // next offset to read
		end     int64 = -1
		records int64
		stalled bool // the last fetch made no progress: let the broker wait for data
		noted   bool
	)
	for end < 0 || offset < end {
		fp, next, err := c.fetch(ctx, partition, offset, stalled)
		if err != nil {
			return records, fmt.Errorf("kafka: restoring changelog %s[%d] at offset %d (end %d): %w", c.topic, partition, offset, end, err)
		}
		if fp.Err != nil {
			if errors.Is(fp.Err, kerr.OffsetOutOfRange) && offset < fp.LogStartOffset {
				offset = fp.LogStartOffset // retention or DeleteRecords moved the start
				continue
			}
			return records, fmt.Errorf("kafka: restoring changelog %s[%d] at offset %d: %w", c.topic, partition, offset, fp.Err)
		}
		if end < 0 {
			end = fp.HighWatermark
			if offset < fp.LogStartOffset {
				offset = fp.LogStartOffset
				continue // records below the start, if any came, were not there
			}
		}
		for _, r := range fp.Records {
			if r.Offset >= end {
				break
			}
			if err := fn(r.Key, r.Value, r.Offset); err != nil {
				// The key (a student id) stays out: this error ends in the worker's log.
				return records, fmt.Errorf("kafka: restoring changelog %s[%d]: the record at offset %d: %w", c.topic, partition, r.Offset, err)
			}
			records++
		}
		stalled = next <= offset
		if stalled && fp.LastStableOffset < end && !noted {
			noted = true
			// A broker that stops while a commit's markers are in flight can
			// leave a transaction that nothing ends (its coordinator completed
			// it without the marker here): say how to end it by hand.
			c.log("kafka: changelog restore waits for an open transaction to end (the previous owner's last states); it ends by commit, abort or the transaction timeout. "+
				"If it still waits after the transaction timeout, the transaction is hanging: abort it with kafka-transactions.sh --bootstrap-server BROKER abort --topic TOPIC --partition PARTITION --start-offset LAST_STABLE_OFFSET",
				"topic", c.topic, "partition", partition, "at", offset, "end", end, "last_stable_offset", fp.LastStableOffset)
		}
		offset = max(offset, next)
	}
	return records, nil
}

// Fetch returns the key and value of the committed record at offset in the
// changelog partition: state.Store reads an evicted student back with it (it
// implements state.Fetcher). ErrRecordGone when there is none there.
func (c *Changelog) Fetch(ctx context.Context, partition int32, offset int64) (key, value []byte, err error) {
	if offset < 0 {
		return nil, nil, fmt.Errorf("%w: changelog %s[%d] offset %d is negative", ErrRecordGone, c.topic, partition, offset)
	}
	at, stalled := offset, false
	for {
		fp, next, err := c.fetch(ctx, partition, at, stalled)
		if err != nil {
			return nil, nil, fmt.Errorf("kafka: fetching changelog %s[%d] offset %d: %w", c.topic, partition, offset, err)
		}
		switch {
		case errors.Is(fp.Err, kerr.OffsetOutOfRange):
			return nil, nil, fmt.Errorf("%w: changelog %s[%d] offset %d is outside the log", ErrRecordGone, c.topic, partition, offset)
		case fp.Err != nil:
			return nil, nil, fmt.Errorf("kafka: fetching changelog %s[%d] offset %d: %w", c.topic, partition, offset, fp.Err)
		}
		for _, r := range fp.Records {
			switch {
			case r.Offset == offset:
				return r.Key, r.Value, nil
			case r.Offset > offset:
				return nil, nil, fmt.Errorf("%w: changelog %s[%d] has no record at offset %d (the next is at %d): it was compacted away, so another writer produced a newer state for its key; restart the worker to restore the partition", ErrRecordGone, c.topic, partition, offset, r.Offset)
			}
		}
		if next > offset {
			// Only skipped data (an aborted transaction or a marker) was at offset.
			return nil, nil, fmt.Errorf("%w: changelog %s[%d] offset %d holds no committed record", ErrRecordGone, c.topic, partition, offset)
		}
		if offset >= fp.HighWatermark {
			return nil, nil, fmt.Errorf("%w: changelog %s[%d] offset %d is at or past the end (%d)", ErrRecordGone, c.topic, partition, offset, fp.HighWatermark)
		}
		// Below the high watermark but above the last stable offset: the
		// record's transaction is still open; wait for it, bounded by ctx.
		stalled = next <= at
		at = max(at, next)
	}
}

// fetch issues one read_committed Fetch for partition at offset to its
// leader and returns what kgo made of it and the next offset to ask for.
// With wait the broker holds the request until data arrives (up to
// changelogFetchMaxWait); without it, it answers at once, so an empty or
// caught-up partition costs one round trip.
// Connection trouble and leadership changes are retried here, bounded by ctx;
// errors of the partition itself come back in the FetchPartition.
func (c *Changelog) fetch(ctx context.Context, partition int32, offset int64, wait bool) (kgo.FetchPartition, int64, error) {
	for warned := false; ; {
		fp, next, err := c.fetchOnce(ctx, partition, offset, wait)
		cause := err
		if err == nil {
			cause = fp.Err
		}
		if !retriable(ctx, cause) {
			return fp, next, err
		}
		if !warned {
			warned = true
			c.log("kafka: reading the changelog failed; retrying until it works or the caller's context ends",
				"topic", c.topic, "partition", partition, "offset", offset, "err", cause)
		}
		c.forgetLeaders()
		select {
		case <-ctx.Done():
			return fp, next, ctx.Err()
		case <-time.After(changelogRetryBackoff):
		}
	}
}

var errNoSuchPartition = errors.New("no such partition")

// retriable tells whether reading again may succeed: broker errors Kafka
// marks retriable (leader moved, not available, ...) and connection errors
// are; a missing topic or partition, missing permissions, an offset out of
// range and the end of ctx are not.
func retriable(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil || errors.Is(err, errNoSuchPartition) || errors.Is(err, kerr.OffsetOutOfRange) {
		return false
	}
	var ke *kerr.Error
	if errors.As(err, &ke) {
		return ke.Retriable
	}
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

func (c *Changelog) fetchOnce(ctx context.Context, partition int32, offset int64, wait bool) (kgo.FetchPartition, int64, error) {
	leader, id, err := c.leader(ctx, partition)
	if err != nil {
		return kgo.FetchPartition{}, offset, err
	}
	req := kmsg.NewPtrFetchRequest()
	if wait {
		req.MaxWaitMillis = int32(changelogFetchMaxWait / time.Millisecond)
	}
	req.MinBytes = 1
	req.MaxBytes = changelogFetchMaxBytes
	req.IsolationLevel = 1 // read_committed
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = c.topic
	rt.TopicID = id
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition = partition
	rp.FetchOffset = offset
	rp.PartitionMaxBytes = changelogFetchPartMaxBytes
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)

	resp, err := req.RequestWith(ctx, c.cl.Broker(int(leader)))
	if err != nil {
		return kgo.FetchPartition{}, offset, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return kgo.FetchPartition{}, offset, err
	}
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			p := &resp.Topics[i].Partitions[j]
			if p.Partition != partition {
				continue
			}
			fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
				Offset:         offset,
				IsolationLevel: kgo.ReadCommitted(),
				Topic:          c.topic,
				Partition:      partition,
			}, p, kgo.DefaultDecompressor(), nil)
			return fp, next, nil
		}
	}
	return kgo.FetchPartition{}, offset, fmt.Errorf("broker %d's Fetch response left out partition %d", leader, partition)
}

// leader returns the partition's leader and the topic ID (Fetch v13+ names
// topics by ID), from cache or a metadata request.
func (c *Changelog) leader(ctx context.Context, partition int32) (int32, kadm.TopicID, error) {
	c.mu.Lock()
	l, ok := c.leaders[partition]
	id := c.id
	c.mu.Unlock()
	if ok {
		return l, id, nil
	}
	md, err := c.adm.Metadata(ctx, c.topic)
	if err != nil {
		return 0, id, fmt.Errorf("reading metadata of topic %q: %w", c.topic, err)
	}
	td, ok := md.Topics[c.topic]
	if !ok || td.Err != nil {
		if ok && !errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
			return 0, id, fmt.Errorf("reading metadata of topic %q: %w", c.topic, td.Err)
		}
		return 0, id, fmt.Errorf("%w: changelog topic %q does not exist: create it (EnsureChangelogTopic) or fix DKTSCORE_KAFKA_CHANGELOG_TOPIC", errNoSuchPartition, c.topic)
	}
	pd, ok := td.Partitions[partition]
	if !ok {
		return 0, id, fmt.Errorf("%w: changelog topic %q has %d partitions, no partition %d: give it as many partitions as the input topic", errNoSuchPartition, c.topic, len(td.Partitions), partition)
	}
	if pd.Leader < 0 {
		return 0, id, fmt.Errorf("changelog %s[%d] has no leader right now: %v", c.topic, partition, pd.Err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.id = td.ID
	if c.leaders == nil {
		c.leaders = make(map[int32]int32)
	}
	for p, d := range td.Partitions {
		if d.Leader >= 0 {
			c.leaders[p] = d.Leader
		}
	}
	return pd.Leader, c.id, nil
}

func (c *Changelog) forgetLeaders() {
	c.mu.Lock()
	c.leaders = nil
	c.mu.Unlock()
}

// EnsureChangelogTopic creates the changelog topic, compacted and with as
// many partitions as the input topic, unless it exists; then it runs
// CheckChangelogTopic. For tests and the local demo; in production an
// administrator usually creates topics, and the worker runs only the check.
func EnsureChangelogTopic(ctx context.Context, cfg ClientConfig, changelog, input string) error {
	counts, err := partitionCounts(ctx, cfg, input)
	if err != nil {
		return err
	}
	n, ok := counts[input]
	if !ok {
		return fmt.Errorf("%w: input topic %q does not exist: create it first, the changelog %q gets its partition count", ErrChangelogMismatch, input, changelog)
	}
	if err := EnsureCompactedTopics(ctx, cfg, n, changelog); err != nil {
		return err
	}
	return CheckChangelogTopic(ctx, cfg, changelog, input)
}

// EnsureCompactedTopics is EnsureTopics for compacted topics
// (cleanup.policy=compact): created if missing; existing ones are left as
// they are (CheckChangelogTopic then reports a mismatch).
func EnsureCompactedTopics(ctx context.Context, cfg ClientConfig, partitions int32, topics ...string) error {
	compact := "compact"
	return ensureTopics(ctx, cfg, partitions, map[string]*string{"cleanup.policy": &compact}, topics...)
}

// CheckChangelogTopic returns nil when the changelog topic can hold the
// states of the input topic's students: both exist, they have the same
// number of partitions (a student's state lives in the changelog partition
// numbered like the input partition of its events), and the changelog's
// cleanup.policy is exactly compact (with delete, alone or beside compact,
// the broker drops the states of students idle for longer than
// retention.ms). Otherwise it returns ErrChangelogMismatch naming both topics,
// what differs and how to fix it.
func CheckChangelogTopic(ctx context.Context, cfg ClientConfig, changelog, input string) error {
	counts, err := partitionCounts(ctx, cfg, changelog, input)
	if err != nil {
		return err
	}
	in, inOK := counts[input]
	cl, clOK := counts[changelog]
	switch {
	case !inOK:
		return fmt.Errorf("%w: input topic %q does not exist: create it, or fix DKTSCORE_KAFKA_INPUT_TOPIC", ErrChangelogMismatch, input)
	case !clOK:
		return fmt.Errorf("%w: changelog topic %q does not exist: create it with %d partitions (as many as input topic %q) and cleanup.policy=compact, e.g. kafka-topics.sh --create --topic %s --partitions %d --config cleanup.policy=compact",
			ErrChangelogMismatch, changelog, in, input, changelog, in)
	case cl != in:
		return fmt.Errorf("%w: changelog topic %q has %d partitions but input topic %q has %d; they must match, because the state of a student whose events are in input partition p is kept in changelog partition p: recreate the changelog with %d partitions and reload it (dktscore state load), or add partitions to whichever has fewer (then re-bootstrap: students move with the input's partitioner)",
			ErrChangelogMismatch, changelog, cl, input, in, in)
	}
	policy, err := cleanupPolicy(ctx, cfg, changelog)
	if err != nil {
		return err
	}
	if !onlyCompact(policy) {
		return fmt.Errorf("%w: changelog topic %q has cleanup.policy=%s, so the broker deletes the states of students idle for longer than its retention: set it to compact alone, e.g. kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config cleanup.policy=compact",
			ErrChangelogMismatch, changelog, policy, changelog)
	}
	return nil
}

// onlyCompact tells whether a cleanup.policy value (a comma-separated list)
// is compact and nothing else.
func onlyCompact(policy string) bool {
	policies := strings.Split(policy, ",")
	for _, p := range policies {
		if strings.TrimSpace(p) != "compact" {
			return false
		}
	}
	return len(policies) > 0
}

// partitionCounts returns the partition count of each topic that exists.
func partitionCounts(ctx context.Context, cfg ClientConfig, topics ...string) (map[string]int32, error) {
	adm, done, err := newAdmin(cfg)
	if err != nil {
		return nil, err
	}
	defer done()
	md, err := adm.Metadata(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("kafka: reading metadata of topics %v on brokers %v: %w; check that the brokers are reachable", topics, cfg.Brokers, err)
	}
	counts := make(map[string]int32, len(topics))
	for _, t := range topics {
		td, ok := md.Topics[t]
		switch {
		case !ok, errors.Is(td.Err, kerr.UnknownTopicOrPartition):
		case td.Err != nil:
			return nil, fmt.Errorf("kafka: reading metadata of topic %q: %w", t, td.Err)
		default:
			counts[t] = int32(len(td.Partitions))
		}
	}
	return counts, nil
}

func cleanupPolicy(ctx context.Context, cfg ClientConfig, topic string) (string, error) {
	adm, done, err := newAdmin(cfg)
	if err != nil {
		return "", err
	}
	defer done()
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return "", fmt.Errorf("kafka: describing the configs of topic %q: %w; grant this principal DESCRIBE_CONFIGS on it", topic, err)
	}
	rc, err := rcs.On(topic, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return "", fmt.Errorf("kafka: describing the configs of topic %q: %w", topic, err)
	}
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" {
			return c.MaybeValue(), nil
		}
	}
	return "", fmt.Errorf("kafka: topic %q reported no cleanup.policy; check the broker", topic)
}

func newAdmin(cfg ClientConfig) (*kadm.Client, func(), error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	opts, err := cfg.opts()
	if err != nil {
		return nil, nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: creating an admin client for brokers %v: %w", cfg.Brokers, err)
	}
	return kadm.NewClient(cl), cl.Close, nil
}
