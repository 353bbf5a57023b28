package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/caarlos0/env/v11"

	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/kafka"
	"github.com/dktscore/dktscore/state"
)

const stateUsage = `Usage: dktscore state load --input STATES.parquet --partitions N --partitioner murmur2|crc32 [flags]

Loads the states written by 'dktscore score --emit-state' into event mode's changelog topic, one
record per student (key student_id; value a state record with partition -1 and offset -1, "from
history"), so that students known before going live keep their history.

Each record goes to the changelog partition with the number of the input partition the student's
events will arrive in. That is the partition the INPUT's producers choose for key student_id, so
--partitioner must name their partitioner and --partitions the input topic's partition count:
  murmur2  Java clients, Kafka Streams, franz-go, librdkafka with partitioner=murmur2_random
  crc32    librdkafka's default (consistent_random): confluent-kafka Python/Go/.NET, kcat
The brokers, TLS and SASL come from the DKTSCORE_KAFKA_* variables, as for serve.
`

func stateCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "load" {
		fmt.Fprint(stderr, stateUsage)
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			return 0
		}
		return 2
	}
	fs := flag.NewFlagSet("state load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	input := fs.String("input", "", "state file written by score --emit-state (required)")
	topic := fs.String("topic", envOr("DKTSCORE_KAFKA_CHANGELOG_TOPIC", kafka.DefaultChangelogTopic), "changelog topic (DKTSCORE_KAFKA_CHANGELOG_TOPIC)")
	partitions := fs.Int("partitions", 0, "partition count of the input topic, and so of the changelog (required)")
	partitioner := fs.String("partitioner", "", "murmur2 | crc32: the partitioner of the input topic's producers (required)")
	brokers := fs.String("brokers", "", "Kafka bootstrap brokers, comma-separated (default DKTSCORE_KAFKA_BROKERS)")
	create := fs.Bool("create", false, "create the changelog topic (compacted, --partitions partitions) if it does not exist")
	fs.Usage = func() {
		fmt.Fprint(stderr, stateUsage+"\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	keyPartitioner, perr := kafka.ParseKeyPartitioner(*partitioner)
	var problems []string
	if *input == "" {
		problems = append(problems, "--input is required: the file of score --emit-state")
	}
	if *partitions < 1 {
		problems = append(problems, "--partitions is required: the input topic's partition count (≥ 1)")
	}
	if perr != nil {
		problems = append(problems, "--partitioner: "+perr.Error())
	}
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected arguments %q", fs.Args()))
	}
	if len(problems) > 0 {
		fmt.Fprintf(stderr, "dktscore state load:\n  %s\n\n", strings.Join(problems, "\n  "))
		fs.Usage()
		return 2
	}
	cfg, err := env.ParseAsWithOptions[serveConfig](env.Options{Prefix: "DKTSCORE_"})
	if err != nil {
		fmt.Fprintf(stderr, "dktscore state load: %v\n", err)
		return 2
	}
	client := cfg.client()
	if *brokers != "" {
		client.Brokers = strings.Split(*brokers, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	load := stateLoad{input: *input, topic: *topic, partitions: int32(*partitions), partitioner: keyPartitioner, create: *create, client: client}
	if err := load.run(ctx, stdout); err != nil {
		fmt.Fprintf(stderr, "dktscore state load: %v\n", err)
		return 1
	}
	return 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type stateLoad struct {
	input, topic string
	partitions   int32
	partitioner  kafka.KeyPartitioner
	create       bool
	client       kafka.ClientConfig
}

// produceChunk is how many records one ProduceToPartitions call sends: one
// round trip per chunk, and a bounded amount of memory.
const produceChunk = 1000

func (l stateLoad) run(ctx context.Context, stdout io.Writer) error {
	// A first pass checks the whole file, so a bad file loads nothing.
	versions, students, err := checkStateFile(ctx, l.input)
	if err != nil {
		return err
	}
	n, exists, err := kafka.TopicPartitions(ctx, l.client, l.topic)
	switch {
	case err != nil:
		return err
	case !exists && !l.create:
		return fmt.Errorf("changelog topic %q does not exist: create it compacted with %d partitions (as many as the input topic), or pass --create", l.topic, l.partitions)
	case !exists:
		if err := kafka.EnsureCompactedTopics(ctx, l.client, l.partitions, l.topic); err != nil {
			return err
		}
	case n != l.partitions:
		return fmt.Errorf("changelog topic %q has %d partitions but --partitions is %d: the changelog must have as many partitions as the input topic; fix --partitions or recreate the topic", l.topic, n, l.partitions)
	}

	if err := refuseLiveStates(ctx, l.client, l.topic, l.partitions); err != nil {
		return err
	}

	producer, err := kafka.NewProducer(l.client)
	if err != nil {
		return err
	}
	defer producer.Close()
	states, err := columnar.OpenStateFile(ctx, l.input)
	if err != nil {
		return err
	}
	defer states.Close()
	perPartition := make([]int, l.partitions)
	chunk := make([]kafka.Message, 0, produceChunk)
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		if _, err := producer.ProduceToPartitions(ctx, chunk); err != nil {
			return fmt.Errorf("loading %s into %q: %w (records already written are complete states; rerunning the load is safe)", l.input, l.topic, err)
		}
		chunk = chunk[:0]
		return nil
	}
	for {
		row, err := states.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		key := []byte(row.StudentID)
		p := l.partitioner.Partition(key, l.partitions)
		record := state.Record{StudentID: row.StudentID, ModelVersion: row.ModelVersion, Partition: -1, Offset: -1,
			Events: row.Events, State: row.State}
		chunk = append(chunk, kafka.Message{Topic: l.topic, Partition: p, Key: key, Value: record.Encode()})
		perPartition[p]++
		if len(chunk) == produceChunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "loaded %d states from %s into %s (%d partitions, %s partitioner); per partition %v; model versions %s\n",
		students, l.input, l.topic, l.partitions, l.partitioner, perPartition, formatCounts(versions))
	return nil
}

// refuseLiveStates fails when the changelog already holds states that event
// mode applied events to (partition ≥ 0): a bootstrap state would replace a
// newer one, and the events since would be lost to it. States of an earlier
// bootstrap (partition -1) may be replaced, so a failed load can be rerun.
func refuseLiveStates(ctx context.Context, client kafka.ClientConfig, topic string, partitions int32) error {
	changelog, err := kafka.NewChangelog(client, topic)
	if err != nil {
		return err
	}
	defer changelog.Close()
	live, example := 0, ""
	for p := range partitions {
		_, err := changelog.Restore(ctx, p, func(key, value []byte, offset int64) error {
			r, err := state.DecodeRecord(key, value)
			switch {
			case errors.Is(err, state.ErrTombstone):
			case err != nil:
				return fmt.Errorf("partition %d offset %d: %w", p, offset, err)
			case r.Partition >= 0:
				live++
				example = r.StudentID
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("checking changelog %q for live states: %w", topic, err)
		}
	}
	if live > 0 {
		return fmt.Errorf("changelog %q already holds %d states that event mode updated (e.g. student %q); loading would replace them with older bootstrap states: load into a new, empty changelog before going live", topic, live, example)
	}
	return nil
}

// checkStateFile reads the state file through: every row valid (the reader
// checks each), no student twice (compaction would silently keep one of them),
// and one state size throughout.
func checkStateFile(ctx context.Context, path string) (map[string]int, int, error) {
	states, err := columnar.OpenStateFile(ctx, path)
	if err != nil {
		return nil, 0, err
	}
	defer states.Close()
	versions := map[string]int{}
	rowOf := map[string]int{}
	size := -1
	for row := 0; ; row++ {
		s, err := states.Next()
		if errors.Is(err, io.EOF) {
			return versions, row, nil
		}
		if err != nil {
			return nil, 0, err
		}
		if first, dup := rowOf[s.StudentID]; dup {
			return nil, 0, fmt.Errorf("%s: student %q is in rows %d and %d; a student has one state: drop one of them", path, s.StudentID, first, row)
		}
		rowOf[s.StudentID] = row
		if size < 0 {
			size = len(s.State)
		} else if len(s.State) != size {
			return nil, 0, fmt.Errorf("%s row %d: student %q has a state of %d values, earlier rows %d; states of one model have one size", path, row, s.StudentID, len(s.State), size)
		}
		versions[s.ModelVersion]++
	}
}

func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, ",")
}
