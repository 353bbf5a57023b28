package kafka

import (
	"fmt"
	"hash/crc32"
)

// KeyPartitioner is how a producer maps a record key to a partition. Loading
// states into the changelog needs it: a student's state must sit in the
// changelog partition with the number of the input partition that the input's
// producers send the student's events to, and that depends on their client.
type KeyPartitioner string

const (
	// Murmur2 is the Java client's default partitioner (and franz-go's, and
	// librdkafka's murmur2 / murmur2_random): murmur2(key) & 0x7fffffff mod n.
	Murmur2 KeyPartitioner = "murmur2"
	// CRC32 is librdkafka's default (consistent_random, also consistent):
	// crc32(key) mod n, the IEEE CRC-32 — the partitioner of confluent-kafka
	// Python, Go, .NET and kcat unless configured otherwise.
	CRC32 KeyPartitioner = "crc32"
)

// ParseKeyPartitioner accepts "murmur2" or "crc32".
func ParseKeyPartitioner(s string) (KeyPartitioner, error) {
	switch p := KeyPartitioner(s); p {
	case Murmur2, CRC32:
		return p, nil
	}
	return "", fmt.Errorf("%w: partitioner %q: use murmur2 (Java clients, franz-go, librdkafka's murmur2_random) or crc32 (librdkafka's default consistent_random: confluent-kafka, kcat)",
		ErrInvalidConfig, s)
}

// Partition returns the partition of key among partitions (≥ 1). Keys are
// never empty here (student ids); the producers' handling of an empty key is
// random anyway.
func (p KeyPartitioner) Partition(key []byte, partitions int32) int32 {
	if p == CRC32 {
		return int32(crc32.ChecksumIEEE(key) % uint32(partitions))
	}
	return int32(murmur2(key)&0x7fffffff) % partitions
}

// murmur2 is Kafka's Utils.murmur2 (MurmurHash2, seed 0x9747b28c), byte for
// byte as the Java client computes it.
func murmur2(data []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	h := uint32(seed) ^ uint32(len(data))
	n := len(data) / 4 * 4
	for i := 0; i < n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch tail := data[n:]; len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
