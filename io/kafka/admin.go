package kafka

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnsureTopics creates the topics that do not exist yet, with the given
// partition count and the broker's default replication factor (1 on a
// single-node test broker). Topics that already exist are left as they are,
// whatever their partition count. It returns once every topic is in the
// brokers' metadata with a leader for each partition, so callers can use
// them at once.
func EnsureTopics(ctx context.Context, cfg ClientConfig, partitions int32, topics ...string) error {
	return ensureTopics(ctx, cfg, partitions, nil, topics...)
}

// ensureTopics is EnsureTopics with topic configs for the created topics.
func ensureTopics(ctx context.Context, cfg ClientConfig, partitions int32, configs map[string]*string, topics ...string) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if partitions < 1 {
		return fmt.Errorf("%w: EnsureTopics partitions is %d: use 1 or more", ErrInvalidConfig, partitions)
	}
	for i, t := range topics {
		if t == "" {
			return fmt.Errorf("%w: EnsureTopics topics[%d] is empty: name the topic", ErrInvalidConfig, i)
		}
	}
	if len(topics) == 0 {
		return nil
	}
	opts, err := cfg.opts()
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka: creating an admin client for brokers %v: %w", cfg.Brokers, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	// -1 asks for the broker's default.replication.factor (Kafka 2.4+).
	resps, err := adm.CreateTopics(ctx, partitions, -1, configs, topics...)
	if err != nil {
		if serr := securityError(cfg.Brokers, err); serr != nil {
			return serr
		}
		return fmt.Errorf("kafka: creating topics %v on brokers %v: %w; check that the brokers are reachable", topics, cfg.Brokers, err)
	}
	var errs []error
	for _, t := range topics {
		r, ok := resps[t]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("kafka: creating topic %q: the broker did not answer for it; retry", t))
		case r.Err == nil, errors.Is(r.Err, kerr.TopicAlreadyExists):
		case errors.Is(r.Err, kerr.TopicAuthorizationFailed), errors.Is(r.Err, kerr.ClusterAuthorizationFailed):
			errs = append(errs, fmt.Errorf("kafka: creating topic %q: %w; grant this principal CREATE, or have an administrator create it", t, r.Err))
		default:
			errs = append(errs, fmt.Errorf("kafka: creating topic %q with %d partitions: %w", t, partitions, r.Err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return waitForLeaders(ctx, adm, topics)
}

// topicVisibleTimeout bounds the wait for created topics to show in metadata.
const topicVisibleTimeout = 10 * time.Second

// waitForLeaders waits until every topic is in the metadata with a leader for
// each partition: a topic just created takes a moment to get there, and a
// client that asks before would be told it does not exist.
func waitForLeaders(ctx context.Context, adm *kadm.Client, topics []string) error {
	deadline := time.Now().Add(topicVisibleTimeout)
	for {
		md, err := adm.Metadata(ctx, topics...)
		if err == nil && allLed(md, topics) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kafka: topics %v were created but have no leader for every partition after %v; check the brokers' health", topics, topicVisibleTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func allLed(md kadm.Metadata, topics []string) bool {
	for _, t := range topics {
		td, ok := md.Topics[t]
		if !ok || td.Err != nil || len(td.Partitions) == 0 {
			return false
		}
		for _, p := range td.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false
			}
		}
	}
	return true
}
