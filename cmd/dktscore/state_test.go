package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dktscore/dktscore/internal/kafkatest"
	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/state"
)

func testBrokers(t *testing.T) kafka.ClientConfig {
	t.Helper()
	return kafka.ClientConfig{Brokers: kafkatest.Brokers(t), ClientID: "dktscore-test"}
}

func uniqueTopic(t *testing.T, what string) string {
	return fmt.Sprintf("dktscore-test-state-load-%s-%s-%d", strings.ToLower(strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())), what, time.Now().UnixNano())
}

func readStateRows(t *testing.T, path string) []columnar.StateRow {
	t.Helper()
	r, err := columnar.OpenStateFile(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var rows []columnar.StateRow
	for {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			return rows
		}
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
}

// restoreTopic reads every record of every partition of a changelog topic.
func restoreTopic(ctx context.Context, t *testing.T, client kafka.ClientConfig, topic string, partitions int32) map[int32][]state.Record {
	t.Helper()
	cl, err := kafka.NewChangelog(client, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close(context.Background())
	out := map[int32][]state.Record{}
	for p := range partitions {
		_, err := cl.Restore(ctx, p, func(key, value []byte, _ int64) error {
			r, err := state.DecodeRecord(key, value)
			if err != nil {
				return err
			}
			out[p] = append(out[p], r)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// Real students' states go from score --emit-state through state load into a
// real broker, each to the partition the input's producers would pick, and
// come back from the changelog as the same states.
func TestStateLoadPutsEveryStudentWhereTheInputPartitionerSendsTheirEvents(t *testing.T) {
	client := testBrokers(t)
	dir := t.TempDir()
	input := filepath.Join(dir, "students.csv")
	writeDKT3(t, input, readDKT3Students(t, testSplit)[:60])
	statesPath := filepath.Join(dir, "states.parquet")
	runCommand(t, "score", "--model", testModel, "--input", input, "--output", filepath.Join(dir, "o.parquet"), "--emit-state", statesPath, "--quiet")
	want := readStateRows(t, statesPath)
	if len(want) != 60 {
		t.Fatalf("emit-state wrote %d states for 60 students", len(want))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const partitions = 3
	for _, partitioner := range []kafka.KeyPartitioner{kafka.Murmur2, kafka.CRC32} {
		t.Run(string(partitioner), func(t *testing.T) {
			topic := uniqueTopic(t, "changelog")
			out := runCommand(t, "state", "load", "--input", statesPath, "--topic", topic, "--partitions", fmt.Sprint(partitions),
				"--partitioner", string(partitioner), "--brokers", strings.Join(client.Brokers, ","), "--create")
			if !strings.Contains(out, "loaded 60 states") || !strings.Contains(out, "model versions dkt/1=60") {
				t.Fatalf("summary: %s", out)
			}
			got := restoreTopic(ctx, t, client, topic, partitions)
			byStudent := map[string]state.Record{}
			for p, records := range got {
				for _, r := range records {
					if wantP := partitioner.Partition([]byte(r.StudentID), partitions); p != wantP {
						t.Fatalf("student %q is in changelog partition %d; %s sends its events to input partition %d", r.StudentID, p, partitioner, wantP)
					}
					if _, dup := byStudent[r.StudentID]; dup {
						t.Fatalf("student %q loaded twice", r.StudentID)
					}
					byStudent[r.StudentID] = r
				}
			}
			if len(got) < 2 {
				t.Fatalf("60 students landed in %d of %d partitions", len(got), partitions)
			}
			for _, w := range want {
				r, ok := byStudent[w.StudentID]
				if !ok {
					t.Fatalf("student %q is not in the changelog", w.StudentID)
				}
				if r.Partition != -1 || r.Offset != -1 || r.Events != w.Events || r.ModelVersion != "dkt/1" || !slices.Equal(r.State, w.State) {
					t.Fatalf("student %q: changelog has partition %d offset %d events %d version %q (state equal: %v); file has events %d",
						w.StudentID, r.Partition, r.Offset, r.Events, r.ModelVersion, slices.Equal(r.State, w.State), w.Events)
				}
			}
			if len(byStudent) != len(want) {
				t.Fatalf("changelog holds %d students, the file %d", len(byStudent), len(want))
			}
			// Bootstrap states may be replaced: a load that failed midway can be rerun.
			runCommand(t, "state", "load", "--input", statesPath, "--topic", topic, "--partitions", fmt.Sprint(partitions),
				"--partitioner", string(partitioner), "--brokers", strings.Join(client.Brokers, ","))
		})
	}
}

func TestStateLoadRefusesWhatWouldMisplaceOrLoseStates(t *testing.T) {
	client := testBrokers(t)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := columnar.Config{NumSkills: 124, ModelVersion: "dkt/1", Format: columnar.FormatParquet}
	write := func(name string, ids ...string) string {
		path := filepath.Join(dir, name)
		w, err := columnar.CreateStateFile(path, cfg, 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			if err := w.Write(columnar.StateRow{StudentID: id, Events: 2, State: []float32{1, 2, 3, 4}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good, dup := write("good.parquet", "a", "b"), write("dup.parquet", "a", "b", "a")
	twoPartitions := uniqueTopic(t, "two")
	if err := kafka.EnsureCompactedTopics(ctx, client, 2, twoPartitions); err != nil {
		t.Fatal(err)
	}
	brokers := strings.Join(client.Brokers, ",")
	// A changelog event mode already wrote to: a state with applied events.
	live := uniqueTopic(t, "live")
	if err := kafka.EnsureCompactedTopics(ctx, client, 2, live); err != nil {
		t.Fatal(err)
	}
	producer, err := kafka.NewProducer(client)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close(context.Background())
	applied := state.Record{ModelVersion: "dkt/1", Partition: 1, Offset: 7, Events: 3, State: []float32{1, 2, 3, 4}}
	if _, err := producer.ProduceToPartitions(ctx, []kafka.Message{{Topic: live, Partition: 1, Key: []byte("b"), Value: applied.Encode()}}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"flags missing", []string{"--input", good}, 2, "--partitions is required"},
		{"unknown partitioner", []string{"--input", good, "--partitions", "2", "--partitioner", "random"}, 2, "use murmur2"},
		{"partition count differs", []string{"--input", good, "--topic", twoPartitions, "--partitions", "3", "--partitioner", "crc32", "--brokers", brokers}, 1,
			"has 2 partitions but --partitions is 3"},
		{"topic missing without --create", []string{"--input", good, "--topic", uniqueTopic(t, "missing"), "--partitions", "2", "--partitioner", "crc32", "--brokers", brokers}, 1,
			"does not exist"},
		{"changelog already live", []string{"--input", good, "--topic", live, "--partitions", "2", "--partitioner", "crc32", "--brokers", brokers}, 1,
			`already holds 1 states that event mode updated (e.g. student "b")`},
		{"student twice", []string{"--input", dup, "--topic", twoPartitions, "--partitions", "2", "--partitioner", "crc32", "--brokers", brokers}, 1,
			`student "a" is in rows 0 and 2`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"state", "load"}, c.args...), &stdout, &stderr)
			if code != c.code || !strings.Contains(stderr.String(), c.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr.String(), c.code, c.want)
			}
		})
	}
	if got := restoreTopic(ctx, t, client, twoPartitions, 2); len(got) != 0 {
		t.Fatalf("refused loads wrote records: %v", got)
	}
}

// state load through TLS + SCRAM-SHA-512, configured only by the
// DKTSCORE_KAFKA_* variables as a deployment would: it creates the compacted
// changelog and writes every state over the secured listener, where they are
// read back; its output never shows the password.
func TestStateLoadOverTLSSCRAM(t *testing.T) {
	s := kafkatest.SecureBroker(t)
	client := kafka.ClientConfig{
		Brokers:  s.Brokers,
		ClientID: "dktscore-test",
		TLS:      kafka.TLS{Enabled: true, CAFile: s.CAFile},
		SASL:     kafka.SASL{Mechanism: kafka.SASLScramSHA512, User: s.User, Password: s.Password},
	}
	for name, value := range map[string]string{
		"DKTSCORE_KAFKA_BROKERS": strings.Join(s.Brokers, ","), "DKTSCORE_KAFKA_TLS_ENABLED": "true",
		"DKTSCORE_KAFKA_TLS_CA_FILE": s.CAFile, "DKTSCORE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
		"DKTSCORE_KAFKA_SASL_USER": s.User, "DKTSCORE_KAFKA_SASL_PASSWORD": s.Password,
	} {
		t.Setenv(name, value)
	}
	dir := t.TempDir()
	input := filepath.Join(dir, "students.csv")
	writeDKT3(t, input, readDKT3Students(t, testSplit)[:5])
	statesPath := filepath.Join(dir, "states.parquet")
	runCommand(t, "score", "--model", testModel, "--input", input, "--output", filepath.Join(dir, "o.parquet"), "--emit-state", statesPath, "--quiet")
	want := readStateRows(t, statesPath)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const partitions = 2
	topic := uniqueTopic(t, "changelog")
	var stdout, stderr bytes.Buffer
	code := run([]string{"state", "load", "--input", statesPath, "--topic", topic, "--partitions", fmt.Sprint(partitions),
		"--partitioner", string(kafka.Murmur2), "--create"}, &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), fmt.Sprintf("loaded %d states", len(want))) {
		t.Fatalf("state load over TLS+SCRAM: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	if strings.Contains(stdout.String()+stderr.String(), s.Password) {
		t.Errorf("state load shows the SASL password:\n%s%s", stdout.String(), stderr.String())
	}

	got := map[string]state.Record{}
	for p, records := range restoreTopic(ctx, t, client, topic, partitions) {
		for _, r := range records {
			if wantP := kafka.Murmur2.Partition([]byte(r.StudentID), partitions); p != wantP {
				t.Errorf("student %q is in changelog partition %d, want %d", r.StudentID, p, wantP)
			}
			got[r.StudentID] = r
		}
	}
	for _, w := range want {
		r, ok := got[w.StudentID]
		if !ok {
			t.Errorf("student %q is not in the changelog", w.StudentID)
			continue
		}
		if r.Events != w.Events || r.ModelVersion != "dkt/1" || !slices.Equal(r.State, w.State) {
			t.Errorf("student %q: changelog has events %d version %q (state equal: %v); file has events %d",
				w.StudentID, r.Events, r.ModelVersion, slices.Equal(r.State, w.State), w.Events)
		}
	}
	if len(got) != len(want) {
		t.Errorf("changelog holds %d students, the file %d", len(got), len(want))
	}
}
