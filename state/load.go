package state

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/kafka"
)

// Load is `dktscore state load`: it writes the states of a file of
// `score --emit-state` to event mode's changelog topic, each to the partition
// its student's events will arrive in.
type Load struct {
	Input       string // the state file
	Topic       string // the changelog topic
	Partitions  int32  // the input topic's partition count
	Partitioner kafka.KeyPartitioner
	Create      bool // create a missing changelog topic
	Client      kafka.ClientConfig
}

// produceChunk is how many records one ProduceToPartitions call sends: one
// round trip per chunk, and a bounded amount of memory.
const produceChunk = 1000

// Run loads the file and prints what it loaded on stdout.
func (l Load) Run(ctx context.Context, stdout io.Writer) error {
	// A first pass checks the whole file, so a bad file loads nothing.
	versions, students, err := checkStateFile(ctx, l.Input)
	if err != nil {
		return err
	}
	// A wrong password or CA: exit with the cause, not a failed metadata call.
	if err := kafka.CheckAccess(ctx, l.Client); err != nil {
		return err
	}
	n, exists, err := kafka.TopicPartitions(ctx, l.Client, l.Topic)
	switch {
	case err != nil:
		return err
	case !exists && !l.Create:
		return fmt.Errorf("changelog topic %q does not exist: create it compacted with %d partitions (as many as the input topic), or pass --create", l.Topic, l.Partitions)
	case !exists:
		if err := kafka.EnsureCompactedTopics(ctx, l.Client, l.Partitions, l.Topic); err != nil {
			return err
		}
	case n != l.Partitions:
		return fmt.Errorf("changelog topic %q has %d partitions but --partitions is %d: the changelog must have as many partitions as the input topic; fix --partitions or recreate the topic", l.Topic, n, l.Partitions)
	}

	if err := refuseLiveStates(ctx, l.Client, l.Topic, l.Partitions); err != nil {
		return err
	}

	producer, err := kafka.NewProducer(l.Client)
	if err != nil {
		return err
	}
	defer producer.Close(context.WithoutCancel(ctx))
	states, err := columnar.OpenStateFile(ctx, l.Input)
	if err != nil {
		return err
	}
	defer states.Close()
	perPartition := make([]int, l.Partitions)
	chunk := make([]kafka.Message, 0, produceChunk)
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		if _, err := producer.ProduceToPartitions(ctx, chunk); err != nil {
			return fmt.Errorf("loading %s into %q: %w (records already written are complete states; rerunning the load is safe)", l.Input, l.Topic, err)
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
		p := l.Partitioner.Partition(key, l.Partitions)
		record := Record{StudentID: row.StudentID, ModelVersion: row.ModelVersion, Partition: -1, Offset: -1,
			Events: row.Events, State: row.State}
		chunk = append(chunk, kafka.Message{Topic: l.Topic, Partition: p, Key: key, Value: record.Encode()})
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
		students, l.Input, l.Topic, l.Partitions, l.Partitioner, perPartition, formatCounts(versions))
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
	defer changelog.Close(context.WithoutCancel(ctx))
	live, example := 0, ""
	for p := range partitions {
		_, err := changelog.Restore(ctx, p, func(key, value []byte, offset int64) error {
			r, err := DecodeRecord(key, value)
			switch {
			case errors.Is(err, ErrTombstone):
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
