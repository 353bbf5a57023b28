package kafka

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Vectors from Kafka's own UtilsTest.testMurmur2 (clients/src/test/java/org/
// apache/kafka/common/utils/UtilsTest.java), as Java's signed ints.
func TestMurmur2MatchesJavaKafka(t *testing.T) {
	cases := []struct {
		key  string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
	}
	for _, c := range cases {
		if got := int32(murmur2([]byte(c.key))); got != c.want {
			t.Errorf("murmur2(%q) = %d, Java says %d", c.key, got, c.want)
		}
	}
}

func TestCRC32IsTheIEEEChecksum(t *testing.T) {
	// The CRC-32 check value (IEEE 802.3, reflected, as librdkafka's rd_crc32).
	if got := CRC32.Partition([]byte("123456789"), 1<<30); got != int32(0xCBF43926%(1<<30)) {
		t.Fatalf("crc32 partition of the check string = %d", got)
	}
}

// franz-go's default key partitioner is Java-compatible murmur2; ours must
// agree with it for every key and partition count.
func TestMurmur2PartitionsAsFranzGo(t *testing.T) {
	franz := kgo.StickyKeyPartitioner(nil).ForTopic("t")
	for n := 1; n <= 12; n++ {
		for i := range 500 {
			key := []byte(fmt.Sprintf("student-%d", i))
			if got, want := Murmur2.Partition(key, int32(n)), franz.Partition(&kgo.Record{Key: key}, n); int(got) != want {
				t.Fatalf("key %q, %d partitions: ours %d, franz-go %d", key, n, got, want)
			}
		}
	}
}

func TestParseKeyPartitioner(t *testing.T) {
	for _, c := range []struct {
		in string
		ok bool
	}{{"murmur2", true}, {"crc32", true}, {"consistent_random", false}, {"", false}} {
		if _, err := ParseKeyPartitioner(c.in); (err == nil) != c.ok {
			t.Errorf("ParseKeyPartitioner(%q) = %v", c.in, err)
		}
	}
}

// librdkafka itself (through kcat) places keys on a real broker with both of
// its partitioners; ours must pick the same partitions.
func TestKeyPartitionersMatchLibrdkafkaOnABroker(t *testing.T) {
	cfg := brokerConfig(t)
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat (Debian package) not installed")
	}
	ctx := testCtx(t, 2*time.Minute)
	const partitions = 7
	var keys bytes.Buffer
	for i := range 300 {
		fmt.Fprintf(&keys, "student-%d:v\n", i)
	}
	for _, c := range []struct {
		ours    KeyPartitioner
		rdkafka string
	}{{CRC32, "consistent_random"}, {Murmur2, "murmur2_random"}} {
		t.Run(string(c.ours), func(t *testing.T) {
			topic := uniqueName(t, "keys")
			if err := EnsureTopics(ctx, cfg, partitions, topic); err != nil {
				t.Fatal(err)
			}
			brokers := strings.Join(cfg.Brokers, ",")
			produce := exec.CommandContext(ctx, kcat, "-P", "-b", brokers, "-t", topic, "-K:", "-X", "topic.partitioner="+c.rdkafka)
			produce.Stdin = bytes.NewReader(keys.Bytes())
			if out, err := produce.CombinedOutput(); err != nil {
				t.Fatalf("kcat -P: %v\n%s", err, out)
			}
			out, err := exec.CommandContext(ctx, kcat, "-C", "-b", brokers, "-t", topic, "-e", "-q", "-f", "%k %p\n").Output()
			if err != nil {
				t.Fatalf("kcat -C: %v", err)
			}
			seen, used := 0, map[int32]bool{}
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				key, part, _ := strings.Cut(line, " ")
				p, err := strconv.Atoi(part)
				if err != nil {
					t.Fatalf("kcat line %q: %v", line, err)
				}
				if got := c.ours.Partition([]byte(key), partitions); got != int32(p) {
					t.Fatalf("key %q: librdkafka %s chose partition %d, %s gives %d", key, c.rdkafka, p, c.ours, got)
				}
				seen++
				used[int32(p)] = true
			}
			if seen != 300 || len(used) != partitions {
				t.Fatalf("read back %d of 300 keys over %d of %d partitions", seen, len(used), partitions)
			}
		})
	}
}
