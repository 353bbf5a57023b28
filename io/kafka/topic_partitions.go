package kafka

import "context"

// TopicPartitions returns how many partitions topic has; exists is false when
// the topic does not exist.
func TopicPartitions(ctx context.Context, cfg ClientConfig, topic string) (n int32, exists bool, err error) {
	counts, err := partitionCounts(ctx, cfg, topic)
	if err != nil {
		return 0, false, err
	}
	n, exists = counts[topic]
	return n, exists, nil
}
