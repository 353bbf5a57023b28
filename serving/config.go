package serving

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/dktscore/dktscore/config"
	"github.com/dktscore/dktscore/io/kafka"
)

// Delivery is how input offsets are committed against results.
type Delivery string

const (
	// AtLeastOnce commits an input offset once every result derived from it
	// is acknowledged; a crash redelivers what was in flight.
	AtLeastOnce Delivery = "at-least-once"
	// ExactlyOnce commits results, dead letters and input offsets in one
	// Kafka transaction per poll.
	ExactlyOnce Delivery = "exactly-once"
)

// Mode is what one input message holds.
type Mode string

const (
	// Sequences: a message is a student's whole history.
	Sequences Mode = "sequences"
	// Events: a message is one interaction; each student's state is carried.
	Events Mode = "events"
)

// Config is serve's configuration: DKTSCORE_* variables, each overridden by
// its flag (Settings declares them).
type Config struct {
	Kafka           kafka.ClientConfig
	InputTopic      string
	OutputTopic     string
	DeadLetterTopic string
	Group           string
	Delivery        Delivery
	TransactionalID string
	CreateTopics    int
	MaxMessageBytes int
	MaxPollRecords  int

	Model        string
	ModelVersion string
	ModelPoll    time.Duration
	config.SessionPool
	config.Batching
	MaxSteps int

	config.Process
	config.GPU

	Mode             Mode
	ChangelogTopic   string
	StateMaxStudents int
	StateIdle        time.Duration

	// SupervisedWorker is set by serve itself for each worker process it
	// supervises: the child skips the warnings its parent already gave.
	SupervisedWorker string
}

// Settings declares every setting of serve, bound to c; the set's Resolve
// fills c from defaults, environment and flags.
func Settings(c *Config) *config.Set {
	set := config.NewSet("dktscore serve", config.FromEnvironment)
	str, num, dur := config.String, config.Int, config.Duration
	config.DeclareKafkaClient(set, &c.Kafka)
	c.Kafka.ClientID = "dktscore"
	str(set, &c.InputTopic, config.Spec{Env: "KAFKA_INPUT_TOPIC", Flag: "input-topic", Default: "dkt.interactions",
		Help: "topic of JSON records to score: whole histories (sequences mode) or one interaction each (events mode)"})
	str(set, &c.OutputTopic, config.Spec{Env: "KAFKA_OUTPUT_TOPIC", Flag: "output-topic", Default: "dkt.mastery",
		Help: "topic for Arrow IPC mastery messages"}).Check(notEmpty("name the topic for mastery results"))
	str(set, &c.DeadLetterTopic, config.Spec{Env: "KAFKA_DEAD_LETTER_TOPIC", Flag: "dead-letter-topic", Default: "dkt.interactions.dlq",
		Help: "topic for bad records, with the reason in header dktscore-reason"}).Check(notEmpty("bad records need a topic to go to"))
	str(set, &c.Group, config.Spec{Env: "KAFKA_GROUP", Flag: "group", Default: "dktscore",
		Help: "Kafka consumer group; workers of one group share the input partitions"})
	config.OneOf(set, &c.Delivery, []Delivery{AtLeastOnce, ExactlyOnce}, config.Spec{Env: "DELIVERY", Flag: "delivery", Default: string(AtLeastOnce),
		Help: "at-least-once (commit after the results are acknowledged) or exactly-once (Kafka transactions)"})
	str(set, &c.TransactionalID, config.Spec{Env: "KAFKA_TRANSACTIONAL_ID", Flag: "transactional-id",
		Help: "exactly-once only: producer id, stable per worker and unique among workers; unset = GROUP-HOSTNAME-PID; with several GPUs each worker gets ID-<worker name> (ID-gpu0, ...)"})
	num(set, &c.CreateTopics, config.Spec{Env: "CREATE_TOPICS_PARTITIONS", Flag: "create-topics", Default: "0",
		Help: "create missing topics with this many partitions at start; 0 = never"}).Check(config.NotNegative[int])
	num(set, &c.MaxMessageBytes, config.Spec{Env: "MAX_MESSAGE_BYTES", Flag: "max-message-bytes", Default: "1000000",
		Help: "input messages larger than this are dead-lettered undecoded"}).Check(config.Positive[int])
	num(set, &c.MaxPollRecords, config.Spec{Env: "MAX_POLL_RECORDS", Flag: "max-poll-records", Default: "500",
		Help: "most records fetched per poll"}).Check(config.Positive[int])
	str(set, &c.Model, config.Spec{Env: "MODEL", Flag: "model", Default: "models/dkt",
		Help: "SavedModel base directory in TF Serving's NAME/VERSION layout (the highest version is served and newer ones are loaded as they appear), or one version directory"})
	str(set, &c.ModelVersion, config.Spec{Env: "MODEL_VERSION", Flag: "model-version",
		Help: "serve only this version of DKTSCORE_MODEL (a non-negative integer, the version directory's name); unset = the highest"}).
		Check(versionNumber)
	dur(set, &c.ModelPoll, config.Spec{Env: "MODEL_POLL_INTERVAL", Flag: "model-poll-interval", Default: "10s",
		Help: "how often DKTSCORE_MODEL is checked for new versions; 0 = never (sequence mode: event mode serves the version it started with)"}).
		Check(func(d time.Duration) error {
			if d < 0 {
				return errors.New("is negative; use 0 to never look for new versions")
			}
			return nil
		})
	config.DeclareSessions(set, &c.SessionPool)
	config.DeclareBatching(set, &c.Batching, config.Defaults{MaxDelay: 50 * time.Millisecond, BucketGrowth: config.Measured.BucketGrowth})
	num(set, &c.MaxSteps, config.Spec{Env: "MAX_STEPS", Flag: "max-steps", Default: "0",
		Help: "score only the last N interactions of longer histories; 0 = whole history"}).Check(config.NotNegative[int])
	config.DeclareGPU(set, &c.GPU, "all, none, or GPU indices like 0,2: one worker process per selected GPU")
	config.DeclareProcess(set, &c.Process, "bound on draining in-flight batches after SIGTERM")
	config.OneOf(set, &c.Mode, []Mode{Sequences, Events}, config.Spec{Env: "MODE", Flag: "mode", Default: string(Sequences),
		Help: "sequences (a message is a whole history) or events (a message is one interaction; per-student state is carried)"})
	str(set, &c.ChangelogTopic, config.Spec{Env: "KAFKA_CHANGELOG_TOPIC", Flag: "changelog-topic", Default: kafka.DefaultChangelogTopic,
		Help: "events mode: compacted topic of per-student states, with as many partitions as the input topic"})
	num(set, &c.StateMaxStudents, config.Spec{Env: "STATE_MAX_STUDENTS", Flag: "state-max-students", Default: "100000",
		Help: "events mode: most student states held in memory (about 1.6 KB each for the bundled model); idle ones are evicted first"}).Check(config.AtLeast(1))
	dur(set, &c.StateIdle, config.Spec{Env: "STATE_IDLE", Flag: "state-idle", Default: "10m",
		Help: "events mode: a student without events for this long is evicted from memory (the changelog keeps it)"}).Check(config.Positive[time.Duration])
	str(set, &c.SupervisedWorker, config.Spec{Env: "SUPERVISED_WORKER",
		Help: "set by serve itself for each worker process it supervises (the worker's name, e.g. gpu0); leave it unset"})
	set.Check(c.topicProblems)
	set.Check(func() error { return c.consumer().Validate() })
	set.Check(c.eventProblems)
	return set
}

func notEmpty(fix string) func(string) error {
	return func(s string) error {
		if s == "" {
			return errors.New("is empty; " + fix)
		}
		return nil
	}
}

func versionNumber(v string) error {
	if v == "" {
		return nil
	}
	if n, err := strconv.ParseInt(v, 10, 64); err != nil || n < 0 {
		return errors.New("is not a version number; name a version directory of DKTSCORE_MODEL (a non-negative integer, e.g. 1) or leave it unset to serve the highest")
	}
	return nil
}

func (c *Config) topicProblems() error {
	if c.InputTopic != "" && (c.InputTopic == c.OutputTopic || c.InputTopic == c.DeadLetterTopic) {
		return fmt.Errorf("DKTSCORE_KAFKA_INPUT_TOPIC %q is also an output topic; use distinct topics", c.InputTopic)
	}
	return nil
}

// eventProblems checks what event mode needs besides its settings' own checks.
func (c *Config) eventProblems() error {
	if c.Mode != Events {
		return nil
	}
	var errs []error
	if c.ChangelogTopic == "" {
		errs = append(errs, errors.New("DKTSCORE_KAFKA_CHANGELOG_TOPIC is empty; event mode keeps student states in a compacted topic, e.g. "+kafka.DefaultChangelogTopic))
	}
	for _, t := range []string{c.InputTopic, c.OutputTopic, c.DeadLetterTopic} {
		if t != "" && t == c.ChangelogTopic {
			errs = append(errs, fmt.Errorf("DKTSCORE_KAFKA_CHANGELOG_TOPIC %q is also the input, output or dead-letter topic; use a topic of its own", c.ChangelogTopic))
			break
		}
	}
	return errors.Join(append(errs, c.pinnedModelProblem())...)
}

// pinnedModelProblem refuses an unpinned model in event mode. A base
// directory serves its highest version at each start, so a version dropped
// there for sequence mode's hot reload would be picked up by the next
// restart of an event worker, and every student's state (valid only for the
// weights that produced it) would silently start over and be overwritten.
func (c *Config) pinnedModelProblem() error {
	if c.ModelVersion != "" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(c.Model, "saved_model.pb")); err == nil {
		return nil // a version directory: pinned by its path
	}
	return fmt.Errorf("event mode needs a pinned model version, and DKTSCORE_MODEL %q is a base directory whose highest version would be loaded at each start: "+
		"a new version dropped there would reset every student's state on the next restart (a state is valid only for the model version that produced it); "+
		"set DKTSCORE_MODEL_VERSION (e.g. 1) or point DKTSCORE_MODEL at a version directory (e.g. %s)",
		c.Model, filepath.Join(c.Model, "1"))
}

// consumer is the input consumer's configuration.
func (c *Config) consumer() kafka.ConsumerConfig {
	return kafka.ConsumerConfig{Client: c.Kafka, Group: c.Group, Topics: []string{c.InputTopic},
		MaxPollRecords: c.MaxPollRecords, ReadCommitted: c.Delivery == ExactlyOnce}
}

// transactionalID is the exactly-once producer's id: the configured one,
// else GROUP-HOSTNAME-PID.
func (c *Config) transactionalID() string {
	if c.TransactionalID != "" {
		return c.TransactionalID
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%s-%d", c.Group, host, os.Getpid())
}
