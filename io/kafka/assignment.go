package kafka

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// PartitionsFunc receives topic → partitions. The map is the callee's to
// keep or modify. ctx is the Kafka client's: it ends only when the client
// closes, so bound long work (a restore) with a deadline of your own.
type PartitionsFunc func(ctx context.Context, partitions map[string][]int32) error

// partitionHooks delivers ConsumerConfig.OnAssigned and OnRevoked for both
// Consumer and Transactor, and remembers the first OnAssigned failure so Read
// and Poll can stop the worker instead of handing out records whose partition
// was never prepared.
//
// # Event order on assignment (why blocking in OnAssigned is enough)
//
// kgo runs OnPartitionsAssigned in its group goroutine after the assignment
// is known and BEFORE it fetches the group's committed offsets for the new
// partitions; fetching a partition starts only after those offsets are known.
// So while OnAssigned runs (restoring a changelog, say), no record of a newly
// assigned partition can be fetched, let alone handed out. Heartbeats go on
// meanwhile in their own goroutine, so a long restore does not get the member
// kicked out by the session timeout; a rebalance that starts during it waits
// for it (the rebalance timeout bounds that).
//
// With a Consumer (BlockRebalanceOnPoll), kgo also waits for Read's current
// poll to hand its records over before running the callback, and a poll
// blocks while the callback runs.
//
// # On revoke and loss
//
// OnRevoked runs after a Consumer committed the revoked partitions' acked
// offsets and dropped their buffered records and tracking, and for lost
// partitions (fenced member) after dropping them without a commit. In a
// Transactor it runs after kgo's session marked the open transaction as
// doomed: its End will abort, so nothing produced since the last End is
// visible, and the consumed records come again to whoever owns the partition.
//
// A kgo caveat for the Transactor: GroupTransactSession passes only the
// FIRST revoke (and the first loss) between two Ends to OnRevoked; a second
// rebalance that takes more partitions before the next End is not reported
// (kgo txn.go, the session's onRevoked wrapper). Nothing of those partitions
// is handed out any more, and the transaction aborts either way, so the
// effect is stale state left in memory for them: OnAssigned should therefore
// clear a partition before restoring it (state.Store.DropPartition), so a
// later re-assignment never builds on it.
type partitionHooks struct {
	group      string
	onAssigned PartitionsFunc
	onRevoked  PartitionsFunc
	log        func(msg string, args ...any)

	mu  sync.Mutex
	err error // first OnAssigned failure; sticky
}

func newPartitionHooks(cfg ConsumerConfig) *partitionHooks {
	return &partitionHooks{
		group:      cfg.Group,
		onAssigned: cfg.OnAssigned,
		onRevoked:  cfg.OnRevoked,
		log:        cfg.Client.logger().Error,
	}
}

// assigned calls OnAssigned with the newly assigned partitions.
func (h *partitionHooks) assigned(ctx context.Context, assigned map[string][]int32) {
	if h.onAssigned == nil || len(assigned) == 0 {
		return
	}
	names := describePartitions(assigned)
	if err := h.onAssigned(ctx, clonePartitions(assigned)); err != nil {
		err = fmt.Errorf("kafka: preparing newly assigned partitions %s of group %q (ConsumerConfig.OnAssigned) failed, so their records will not be handed out; restart the worker once the cause is fixed: %w", names, h.group, err)
		h.log("kafka: OnAssigned failed; the consumer stops", "group", h.group, "err", err)
		h.mu.Lock()
		if h.err == nil {
			h.err = err
		}
		h.mu.Unlock()
	}
}

// revoked calls OnRevoked with partitions this member no longer owns.
func (h *partitionHooks) revoked(ctx context.Context, revoked map[string][]int32) {
	if h.onRevoked == nil || len(revoked) == 0 {
		return
	}
	if err := h.onRevoked(ctx, clonePartitions(revoked)); err != nil {
		h.log("kafka: OnRevoked failed", "group", h.group, "partitions", describePartitions(revoked), "err", err)
	}
}

// failed is the first OnAssigned error, or nil.
func (h *partitionHooks) failed() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// transactorOpts registers the hooks on a GroupTransactSession, which wraps
// the revoke and lost callbacks with its own abort logic and calls ours
// after it.
func (h *partitionHooks) transactorOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.OnPartitionsAssigned(func(ctx context.Context, _ *kgo.Client, m map[string][]int32) { h.assigned(ctx, m) }),
		kgo.OnPartitionsRevoked(func(ctx context.Context, _ *kgo.Client, m map[string][]int32) { h.revoked(ctx, m) }),
		kgo.OnPartitionsLost(func(ctx context.Context, _ *kgo.Client, m map[string][]int32) { h.revoked(ctx, m) }),
	}
}

func clonePartitions(m map[string][]int32) map[string][]int32 {
	out := make(map[string][]int32, len(m))
	for t, ps := range m {
		ps = slices.Clone(ps)
		slices.Sort(ps)
		out[t] = ps
	}
	return out
}

// describePartitions renders topic → partitions deterministically for logs.
func describePartitions(m map[string][]int32) string {
	s := ""
	for _, t := range slices.Sorted(maps.Keys(m)) {
		ps := slices.Clone(m[t])
		slices.Sort(ps)
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("%s%v", t, ps)
	}
	return s
}
