package serving

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/internal/kafkatest"
	"github.com/dktscore/dktscore/internal/promtest"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/io/records"
)

// payloadMarker is in every student id and bad record of the workload: a log
// line containing it leaked record contents.
const payloadMarker = "PAYLOAD-7f3a"

// syncBuffer is a log destination the test reads while serve writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freeAddr is a loopback address nothing listens on (serve takes an address,
// not a listener).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// A known workload through `serve` (real broker, real model), then /metrics
// over HTTP: every counter must match it exactly; the sample Grafana dashboard
// may only query series that scrape has; the JSON logs carry no record data.
func TestServeMetricsMatchAKnownWorkload(t *testing.T) {
	brokers := strings.Join(kafkatest.Brokers(t), ",")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// The workload: real students, and bad records of known kinds.
	students, err := records.Open("../data/assistments/builder_test.csv", records.FormatDKT3, records.Options{NumSkills: 124})
	if err != nil {
		t.Fatal(err)
	}
	defer students.Close()
	const good = 80
	var values [][]byte
	realSteps := 0
	for i := range good {
		seq, err := students.Next()
		if err != nil {
			t.Fatal(err)
		}
		value, _ := json.Marshal(map[string]any{"student_id": fmt.Sprintf("%s-%d", payloadMarker, i), "skills": seq.Skills, "correct": seq.Correct})
		values = append(values, value)
		realSteps += len(seq.Skills)
	}
	bad := []struct {
		value string
		kind  records.RejectKind
	}{
		{`{"student_id": "` + payloadMarker + `-a", "skills": [1, 2], "correct": [1]}`, records.RejectLengthMismatch},
		{`{"student_id": "` + payloadMarker + `-b", "skills": [500], "correct": [1]}`, records.RejectSkillRange},
		{`{"student_id": "` + payloadMarker + `-c", "skills": [3], "correct": [7]}`, records.RejectBadCorrect},
		{`{"student_id": "` + payloadMarker + `-d", "skills": [], "correct": []}`, records.RejectEmpty},
		{payloadMarker + ` is not JSON`, records.RejectMalformed},
		{`{"student_id": "` + payloadMarker + `-e", "skills": [1, 2`, records.RejectMalformed},
		{`{"student_id": "", "skills": [1], "correct": [0], "note": "` + payloadMarker + `"}`, records.RejectBadStudentID},
		{"{\"student_id\": \"" + payloadMarker + "\xff\", \"skills\": [1], \"correct\": [0]}", records.RejectNotUTF8},
	}
	wantKinds := map[records.RejectKind]float64{}
	for _, b := range bad {
		values = append(values, []byte(b.value))
		wantKinds[b.kind]++
	}

	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	in, out, dlq := "dktscore-test-metrics-in-"+suffix, "dktscore-test-metrics-out-"+suffix, "dktscore-test-metrics-dlq-"+suffix
	client := kafka.ClientConfig{Brokers: strings.Split(brokers, ","), ClientID: "dktscore-test"}
	if err := kafka.EnsureTopics(ctx, client, 3, in, out, dlq); err != nil {
		t.Fatal(err)
	}
	producer, err := kafka.NewProducer(client)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range values {
		if err := producer.Produce(ctx, kafka.Message{Topic: in, Key: []byte(fmt.Sprint(i)), Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	producer.Close(context.Background())

	addr := freeAddr(t)
	environ := []string{"DKTSCORE_KAFKA_BROKERS=" + brokers, "DKTSCORE_KAFKA_INPUT_TOPIC=" + in,
		"DKTSCORE_KAFKA_OUTPUT_TOPIC=" + out, "DKTSCORE_KAFKA_DEAD_LETTER_TOPIC=" + dlq,
		"DKTSCORE_KAFKA_GROUP=dktscore-test-metrics-" + suffix, "DKTSCORE_MODEL=../models/dkt",
		"DKTSCORE_GPUS=none", "DKTSCORE_SESSIONS=1", "DKTSCORE_THREADS=1", "DKTSCORE_MAX_DELAY=20ms",
		"DKTSCORE_HTTP_ADDR=" + addr, "DKTSCORE_LOG_FORMAT=json", "DKTSCORE_LOG_LEVEL=debug"}
	var cfg Config
	if _, err := Settings(&cfg).Resolve(nil, environ); err != nil {
		t.Fatalf("configuration refused:\n%v", err)
	}
	logs := &syncBuffer{}
	log := cfg.NewLogger(logs)
	serveCtx, stop := context.WithCancel(ctx)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- serveOne(serveCtx, cfg, gpu.Placement{}, log) }()

	// Wait (bounded by ctx) until every record is accounted for and committed.
	url := "http://" + addr + "/metrics"
	var got map[string]float64
	var exported map[string]bool
	for {
		select {
		case err := <-served:
			t.Fatalf("serve returned early: %v\nlogs:\n%s", err, logs.String())
		case <-ctx.Done():
			t.Fatalf("the workload was not processed in time; last scrape: %v\nlogs:\n%s", got, logs.String())
		case <-time.After(200 * time.Millisecond):
		}
		got, exported, err = promtest.Scrape(ctx, url)
		if err == nil && got["dktscore_scored_total"]+got["dktscore_dead_lettered_total"] == float64(len(values)) &&
			got["dktscore_commit_lag"] == 0 {
			break
		}
	}

	want := map[string]float64{
		"dktscore_consumed_total":      float64(len(values)),
		"dktscore_scored_total":        good,
		"dktscore_dead_lettered_total": float64(len(bad)),
		"dktscore_real_steps_total":    float64(realSteps),
		"dktscore_batch_size_sum":      good,
		"dktscore_in_flight":           0,
		"dktscore_batcher_pending":     0,
		"dktscore_commit_lag":          0,
	}
	for _, kind := range records.RejectKinds {
		want["dktscore_rejects_total{kind="+string(kind)+"}"] = wantKinds[kind]
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s = %v (exported %v), want %v", name, g, ok, w)
		}
	}
	batches := got["dktscore_batch_size_count"]
	flushes := 0.0
	for key, v := range got {
		if strings.HasPrefix(key, "dktscore_batch_flushes_total{") {
			flushes += v
		}
	}
	if batches == 0 || flushes != batches || got["dktscore_inference_seconds_count"] != batches {
		t.Errorf("batches %v, flushes by reason sum to %v, inference observations %v: all three must be equal and > 0",
			batches, flushes, got["dktscore_inference_seconds_count"])
	}
	computed := got["dktscore_computed_steps_total"]
	if computed < float64(realSteps) || got["dktscore_padding_efficiency"] != float64(realSteps)/computed {
		t.Errorf("computed steps %v, padding efficiency %v; want ≥ %d and real ÷ computed", computed, got["dktscore_padding_efficiency"], realSteps)
	}

	checkDashboard(t, "../deploy/grafana/dktscore.json", exported)

	stop()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("serve: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("serve did not stop after cancellation")
	}
	checkLogs(t, logs.String(), len(bad))
}

// checkDashboard parses the sample dashboard and fails for every series it
// queries that the worker does not export.
func checkDashboard(t *testing.T, path string, exported map[string]bool) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s is not valid JSON: %v", path, err)
	}
	series := regexp.MustCompile(`\b(?:dktscore|process|go)_[a-z0-9_]+`)
	queried := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("%s: panel %q has no query", path, p.Title)
		}
		for _, target := range p.Targets {
			names := series.FindAllString(target.Expr, -1)
			if len(names) == 0 {
				t.Errorf("%s: panel %q queries no dktscore series: %s", path, p.Title, target.Expr)
			}
			for _, name := range names {
				queried++
				if !exported[name] {
					t.Errorf("%s: panel %q queries %s, which /metrics does not export", path, p.Title, name)
				}
			}
		}
	}
	if queried == 0 {
		t.Fatalf("%s: no queries found", path)
	}
}

// checkLogs: every line is a JSON object, the lifecycle is there, each dead
// letter is logged by kind and position, and nothing quotes a record.
func checkLogs(t *testing.T, logs string, deadLetters int) {
	t.Helper()
	if strings.Contains(logs, payloadMarker) {
		t.Errorf("the logs contain record data (%s):\n%s", payloadMarker, logs)
	}
	messages := map[string]int{}
	scanner := bufio.NewScanner(strings.NewReader(logs))
	for scanner.Scan() {
		var line map[string]any
		if err := json.Unmarshal(scanner.Bytes(), &line); err != nil {
			t.Errorf("log line is not JSON: %q", scanner.Text())
			continue
		}
		msg, _ := line["msg"].(string)
		messages[msg]++
		if msg == "dead-lettered a record" {
			if _, ok := line["offset"]; !ok || line["kind"] == nil || line["kind"] == string(records.RejectOther) {
				t.Errorf("dead letter logged without offset or kind: %s", scanner.Text())
			}
		}
	}
	for msg, n := range map[string]int{"serving": 1, "stopped after draining": 1, "dead-lettered a record": deadLetters} {
		if messages[msg] != n {
			t.Errorf("%d log lines %q, want %d; logs:\n%s", messages[msg], msg, n, logs)
		}
	}
}
