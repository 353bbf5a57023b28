package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/dktscore/dktscore/config"
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
The brokers, TLS and SASL come from the DKTSCORE_KAFKA_* variables or flags, as for serve.
`

func stateCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "load" {
		fmt.Fprint(stderr, stateUsage)
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			return 0
		}
		return 2
	}
	var load state.Load
	var partitions int
	var partitioner string
	set := config.NewSet("dktscore state load", config.FromEnvironment)
	config.String(set, &load.Input, config.Spec{Flag: "input", Help: "state file written by score --emit-state (required)"})
	config.String(set, &load.Topic, config.Spec{Env: "KAFKA_CHANGELOG_TOPIC", Flag: "topic", Default: kafka.DefaultChangelogTopic,
		Help: "changelog topic"})
	config.Int(set, &partitions, config.Spec{Flag: "partitions", Help: "partition count of the input topic, and so of the changelog (required)"})
	config.String(set, &partitioner, config.Spec{Flag: "partitioner", Help: "murmur2 | crc32: the partitioner of the input topic's producers (required)"})
	config.Bool(set, &load.Create, config.Spec{Flag: "create", Help: "create the changelog topic (compacted, --partitions partitions) if it does not exist"})
	config.DeclareKafkaClient(set, &load.Client)
	set.Check(func() error {
		var problems []error
		if load.Input == "" {
			problems = append(problems, errors.New("--input is required: the file of score --emit-state"))
		}
		if partitions < 1 {
			problems = append(problems, errors.New("--partitions is required: the input topic's partition count (≥ 1)"))
		}
		var err error
		if load.Partitioner, err = kafka.ParseKeyPartitioner(partitioner); err != nil {
			problems = append(problems, fmt.Errorf("--partitioner: %w", err))
		}
		return errors.Join(append(problems, load.Client.Validate())...)
	})
	res, err := set.Resolve(args[1:], os.Environ())
	if res.Help {
		set.WriteUsage(stdout, stateUsage)
		return 0
	}
	// serve's variables in the same environment are not typos here.
	unknown := withoutServeVariables(res.Unknown)
	if err != nil {
		writeProblems(stderr, "dktscore state load", err, unknown)
		return 2
	}
	for _, u := range unknown {
		fmt.Fprintf(stderr, "dktscore state load: warning: %s\n", u.Warning("dktscore state load"))
	}
	load.Partitions = int32(partitions)
	load.Client.ClientID = "dktscore"
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := load.Run(ctx, stdout); err != nil {
		fmt.Fprintf(stderr, "dktscore state load: %v\n", err)
		return 1
	}
	return 0
}
