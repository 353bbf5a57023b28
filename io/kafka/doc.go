// Package kafka is dktscore's thin layer over franz-go (kgo, kadm): callers
// pass and get plain structs (Message, ClientConfig, ...) and never see a
// franz-go type.
//
//   - Consumer: a group consumer for at-least-once. Read hands out one
//     message and an ack, ReadBatch a group of already-fetched messages with
//     an ack each; offsets are committed from acks only, per partition
//     up to the end of the contiguous prefix acked with nil, every
//     CommitInterval, synchronously on partition revoke, and on Close. State
//     of lost partitions is dropped and their late acks ignored. Read polls
//     only when its buffer is empty, and kgo's read-ahead is bounded by modest
//     fetch limits, so a caller that stops reading stops fetching.
//   - Producer: idempotent, acks=all, synchronous Produce (ProduceAll: many
//     messages sent together, one wait for all their acks); records over
//     ClientConfig.MaxMessageBytes (default 1 MiB, the broker default) fail
//     early with ErrMessageTooLarge naming the topic and size.
//   - Transactor: exactly-once consume→process→produce with
//     kgo.GroupTransactSession; End commits outputs and input offsets
//     atomically, or returns ErrAborted after a rebalance.
//   - Results and dead letters (results.go): the header names, the Arrow
//     result message, the dead letter and their size limits, shared by both
//     serve modes.
//   - EnsureTopics: create-if-missing, for tests and the local demo.
//   - Event mode (changelog.go, partition.go, assignment.go):
//     ProduceToPartitions writes to the partition each Message names (a
//     student's state goes to the changelog partition numbered like its
//     input partition), on the Producer or inside a Transactor; Changelog
//     restores a partition read_committed up to its end at call time and
//     fetches one record by offset; CheckChangelogTopic refuses a changelog
//     whose partition count differs from the input's or that is not
//     compacted; ConsumerConfig.OnAssigned runs before any record of a newly
//     assigned partition is handed out (restore there), OnRevoked when one is
//     taken away.
//
// Error messages name the environment variables cmd binds to these fields:
//
//	DKTSCORE_KAFKA_BROKERS             ClientConfig.Brokers (comma-separated host:port)
//	DKTSCORE_KAFKA_TLS_ENABLED         ClientConfig.TLS.Enabled
//	DKTSCORE_KAFKA_TLS_CA_FILE         ClientConfig.TLS.CAFile
//	DKTSCORE_KAFKA_TLS_CERT_FILE       ClientConfig.TLS.CertFile
//	DKTSCORE_KAFKA_TLS_KEY_FILE        ClientConfig.TLS.KeyFile
//	DKTSCORE_KAFKA_SASL_MECHANISM      ClientConfig.SASL.Mechanism
//	DKTSCORE_KAFKA_SASL_USER           ClientConfig.SASL.User
//	DKTSCORE_KAFKA_SASL_PASSWORD       ClientConfig.SASL.Password
//	DKTSCORE_KAFKA_GROUP               ConsumerConfig.Group
//	DKTSCORE_KAFKA_INPUT_TOPIC         ConsumerConfig.Topics
//	DKTSCORE_KAFKA_TRANSACTIONAL_ID    TransactConfig.TransactionalID
//	DKTSCORE_KAFKA_CHANGELOG_TOPIC     NewChangelog's topic (DefaultChangelogTopic)
//
// Integration tests need a broker: run scripts/kafka-local start and set
// DKTSCORE_KAFKA_BROKERS=127.0.0.1:9092; without it they skip.
package kafka
