package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/internal/kafkatest"
	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/io/records"
)

// Integration tests of serve against the secured listener (TLS with
// SCRAM-SHA-512; KAFKA_SECURITY=tls-scram scripts/kafka-local start): every
// Kafka client serve makes (consumer, producer or transactor, admin,
// changelog) must carry the TLS and SASL settings, and the logs must never
// show the password.

// secureServe is one secured listener, as a client config for the test's own
// producer and consumer and as the environment serve resolves.
type secureServe struct {
	client  kafka.ClientConfig
	environ []string
}

func newSecureServe(t *testing.T) secureServe {
	t.Helper()
	s := kafkatest.SecureBroker(t)
	client := kafka.ClientConfig{
		Brokers:  s.Brokers,
		ClientID: "dktscore-test",
		TLS:      kafka.TLS{Enabled: true, CAFile: s.CAFile},
		SASL:     kafka.SASL{Mechanism: kafka.SASLScramSHA512, User: s.User, Password: s.Password},
	}
	environ := []string{"DKTSCORE_KAFKA_BROKERS=" + strings.Join(s.Brokers, ","), "DKTSCORE_KAFKA_TLS_ENABLED=true",
		"DKTSCORE_KAFKA_TLS_CA_FILE=" + s.CAFile, "DKTSCORE_KAFKA_SASL_MECHANISM=SCRAM-SHA-512",
		"DKTSCORE_KAFKA_SASL_USER=" + s.User, "DKTSCORE_KAFKA_SASL_PASSWORD=" + s.Password}
	return secureServe{client: client, environ: environ}
}

// topics are one test's input, output and dead-letter topics.
type topics struct{ in, out, dlq, group string }

func uniqueTopics(t *testing.T) topics {
	name := fmt.Sprintf("dktscore-test-tls-%s-%d", strings.ToLower(strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())), time.Now().UnixNano())
	return topics{in: name + "-in", out: name + "-out", dlq: name + "-dlq", group: name}
}

func (tp topics) environ() []string {
	return []string{"DKTSCORE_KAFKA_INPUT_TOPIC=" + tp.in, "DKTSCORE_KAFKA_OUTPUT_TOPIC=" + tp.out,
		"DKTSCORE_KAFKA_DEAD_LETTER_TOPIC=" + tp.dlq, "DKTSCORE_KAFKA_GROUP=" + tp.group}
}

// runningServe is serve running in-process, its logs captured.
type runningServe struct {
	logs   *syncBuffer
	served chan error
	stop   context.CancelFunc
}

// startServe resolves environ (plus small-worker defaults) as serve's
// configuration and runs serveOne until stopped.
func startServe(ctx context.Context, t *testing.T, environ []string) *runningServe {
	t.Helper()
	environ = append([]string{"DKTSCORE_GPUS=none", "DKTSCORE_SESSIONS=1", "DKTSCORE_THREADS=1", "DKTSCORE_MAX_DELAY=20ms",
		"DKTSCORE_HTTP_ADDR=" + freeAddr(t), "DKTSCORE_LOG_FORMAT=json", "DKTSCORE_LOG_LEVEL=debug"}, environ...)
	var cfg Config
	if _, err := Settings(&cfg).Resolve(nil, environ); err != nil {
		t.Fatalf("configuration refused:\n%v", err)
	}
	s := &runningServe{logs: &syncBuffer{}, served: make(chan error, 1)}
	serveCtx, stop := context.WithCancel(ctx)
	s.stop = stop
	t.Cleanup(stop)
	log := cfg.NewLogger(s.logs)
	go func() { s.served <- serveOne(serveCtx, cfg, gpu.Placement{}, log) }()
	return s
}

// stopAndCheck stops serve, which must return nil, and fails if its logs
// show the password.
func (s *runningServe) stopAndCheck(ctx context.Context, t *testing.T, password string) {
	t.Helper()
	s.stop()
	select {
	case err := <-s.served:
		if err != nil {
			t.Errorf("serve: %v\nlogs:\n%s", err, s.logs.String())
		}
	case <-ctx.Done():
		t.Errorf("serve did not stop after cancellation\nlogs:\n%s", s.logs.String())
	}
	if strings.Contains(s.logs.String(), password) {
		t.Errorf("the logs show the SASL password:\n%s", s.logs.String())
	}
}

func produce(ctx context.Context, t *testing.T, client kafka.ClientConfig, msgs []kafka.Message) {
	t.Helper()
	p, err := kafka.NewProducer(client)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	for _, m := range msgs {
		if err := p.Produce(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
}

// resultStudents consumes topic over the secured listener until want(seen)
// holds, seen counting the rows of each student_id in the Arrow IPC results;
// it fails when serve stops or ctx ends first.
func resultStudents(ctx context.Context, t *testing.T, s *runningServe, cfg kafka.ConsumerConfig, want func(seen map[string]int) bool) map[string]int {
	t.Helper()
	c, err := kafka.NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	seen := map[string]int{}
	for !want(seen) {
		select {
		case err := <-s.served:
			t.Fatalf("serve returned early: %v\nlogs:\n%s", err, s.logs.String())
		default:
		}
		readCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		m, ack, err := c.Read(readCtx)
		cancel()
		if ctx.Err() != nil {
			t.Fatalf("results in time for %v only\nlogs:\n%s", seen, s.logs.String())
		}
		if errors.Is(err, context.DeadlineExceeded) {
			continue // the read's own short deadline: look at serve again
		}
		if err != nil {
			t.Fatalf("read results over TLS+SCRAM: %v", err)
		}
		ack(nil)
		if ct := string(m.Headers[kafka.HeaderContentType]); ct != kafka.ArrowStreamType {
			t.Fatalf("result content-type %q, want %q", ct, kafka.ArrowStreamType)
		}
		for _, id := range studentIDs(t, m.Value) {
			seen[id]++
		}
	}
	return seen
}

// studentIDs decodes one Arrow IPC stream message and returns its student_id
// column.
func studentIDs(t *testing.T, value []byte) []string {
	t.Helper()
	r, err := ipc.NewReader(bytes.NewReader(value))
	if err != nil {
		t.Fatalf("result is not an Arrow IPC stream: %v", err)
	}
	defer r.Release()
	idx := r.Schema().FieldIndices(columnar.ColStudentID)
	if len(idx) != 1 {
		t.Fatalf("result schema has no %s column: %s", columnar.ColStudentID, r.Schema())
	}
	var ids []string
	for r.Next() {
		col, ok := r.RecordBatch().Column(idx[0]).(*array.String)
		if !ok {
			t.Fatalf("%s is %s, not utf8", columnar.ColStudentID, r.RecordBatch().Column(idx[0]).DataType())
		}
		for i := range col.Len() {
			ids = append(ids, col.Value(i))
		}
	}
	if err := r.Err(); err != nil {
		t.Fatalf("read result: %v", err)
	}
	return ids
}

// Sequence mode through TLS + SCRAM-SHA-512, in both delivery modes: topics
// created, real students produced, every one scored and readable from the
// output topic over the same listener; serve stops cleanly and never logs the
// password.
func TestServeSequencesOverTLSSCRAM(t *testing.T) {
	sec := newSecureServe(t)
	students, err := records.Open("../data/assistments/builder_test.csv", records.FormatDKT3, records.Options{NumSkills: 124})
	if err != nil {
		t.Fatal(err)
	}
	defer students.Close()
	const n = 5
	var msgs []kafka.Message
	for i := range n {
		seq, err := students.Next()
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("tls-student-%d", i)
		value, _ := json.Marshal(map[string]any{"student_id": id, "skills": seq.Skills, "correct": seq.Correct})
		msgs = append(msgs, kafka.Message{Key: []byte(id), Value: value})
	}

	for _, delivery := range []Delivery{AtLeastOnce, ExactlyOnce} {
		t.Run(string(delivery), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			tp := uniqueTopics(t)
			if err := kafka.EnsureTopics(ctx, sec.client, 2, tp.in, tp.out, tp.dlq); err != nil {
				t.Fatal(err)
			}
			for i := range msgs {
				msgs[i].Topic = tp.in
			}
			produce(ctx, t, sec.client, msgs)

			s := startServe(ctx, t, append(append(sec.environ, tp.environ()...),
				"DKTSCORE_MODEL=../models/dkt", "DKTSCORE_DELIVERY="+string(delivery)))
			seen := resultStudents(ctx, t, s, kafka.ConsumerConfig{Client: sec.client, Group: tp.group + "-reader",
				Topics: []string{tp.out}, ReadCommitted: delivery == ExactlyOnce},
				func(seen map[string]int) bool { return len(seen) == n })
			for id, rows := range seen {
				if !strings.HasPrefix(id, "tls-student-") || rows != 1 {
					t.Errorf("student %q has %d result rows, want one of tls-student-0..%d", id, rows, n-1)
				}
			}
			s.stopAndCheck(ctx, t, sec.client.SASL.Password)
		})
	}
}

// Event mode through TLS + SCRAM-SHA-512 (at-least-once): serve creates the
// topics and the compacted changelog over the secured listener, restores and
// writes states through it, and every event gets a result row.
func TestServeEventsOverTLSSCRAM(t *testing.T) {
	sec := newSecureServe(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tp := uniqueTopics(t)
	changelog := tp.group + "-changelog"
	// serve creates the topics (DKTSCORE_CREATE_TOPICS_PARTITIONS), the
	// changelog compacted: that admin traffic goes through TLS+SCRAM too.
	// The input is produced first, so create it here with the same count.
	if err := kafka.EnsureTopics(ctx, sec.client, 2, tp.in); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	var msgs []kafka.Message
	for _, e := range []struct {
		student      string
		skill, right int
	}{{"a", 3, 1}, {"b", 7, 0}, {"a", 3, 0}, {"c", 12, 1}, {"b", 7, 1}, {"a", 40, 1}} {
		id := "tls-event-student-" + e.student
		value, _ := json.Marshal(map[string]any{"student_id": id, "skill_id": e.skill, "correct": e.right})
		msgs = append(msgs, kafka.Message{Topic: tp.in, Key: []byte(id), Value: value})
		want[id]++
	}
	produce(ctx, t, sec.client, msgs)

	s := startServe(ctx, t, append(append(sec.environ, tp.environ()...),
		"DKTSCORE_MODE=events", "DKTSCORE_MODEL=../models/dkt/1", "DKTSCORE_DELIVERY=at-least-once",
		"DKTSCORE_KAFKA_CHANGELOG_TOPIC="+changelog, "DKTSCORE_CREATE_TOPICS_PARTITIONS=2"))
	seen := resultStudents(ctx, t, s, kafka.ConsumerConfig{Client: sec.client, Group: tp.group + "-reader", Topics: []string{tp.out}},
		func(seen map[string]int) bool {
			rows := 0
			for _, n := range seen {
				rows += n
			}
			return rows >= len(msgs)
		})
	for id, rows := range seen {
		if rows != want[id] {
			t.Errorf("student %q has %d result rows, want %d (one per event)", id, rows, want[id])
		}
	}
	s.stopAndCheck(ctx, t, sec.client.SASL.Password)

	// serve created the changelog compacted, with the input's partition
	// count, and wrote a state for every student into it over TLS+SCRAM.
	if err := kafka.CheckChangelogTopic(ctx, sec.client, changelog, tp.in); err != nil {
		t.Errorf("changelog serve created: %v", err)
	}
	cl, err := kafka.NewChangelog(sec.client, changelog)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close(context.Background())
	stored := map[string]bool{}
	for p := range int32(2) {
		if _, err := cl.Restore(ctx, p, func(key, _ []byte, _ int64) error { stored[string(key)] = true; return nil }); err != nil {
			t.Fatalf("restore changelog partition %d over TLS+SCRAM: %v", p, err)
		}
	}
	for id := range want {
		if !stored[id] {
			t.Errorf("student %q has no state in the changelog (it holds %v)", id, stored)
		}
	}
}
