package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// ErrInvalidConfig is wrapped by every error a Validate method returns.
var ErrInvalidConfig = errors.New("kafka: invalid config")

// DefaultMaxMessageBytes matches the broker's default message.max.bytes
// (1 MiB plus a 12-byte batch overhead allowance), so a record the producer
// accepts is one the broker accepts too.
const DefaultMaxMessageBytes = 1 << 20

// Defaults applied when a field is zero.
const (
	DefaultMaxPollRecords = 256
	DefaultCommitInterval = time.Second
)

// SASL mechanisms accepted in SASL.Mechanism.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASL authenticates the connection; an empty Mechanism means no SASL.
type SASL struct {
	Mechanism      string // "", PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (case-insensitive)
	User, Password string
}

// TLS configures an encrypted connection. With Enabled and no CAFile the
// system roots verify the broker; CertFile and KeyFile (both or neither) add a
// client certificate for mTLS.
type TLS struct {
	Enabled            bool
	CAFile             string
	CertFile, KeyFile  string
	InsecureSkipVerify bool // tests against self-signed brokers only
}

// ClientConfig is what every client of this package needs to reach the
// cluster. The env names in error messages are the ones cmd binds
// (DKTSCORE_KAFKA_*); the field name is given too for callers that build the
// struct directly.
type ClientConfig struct {
	Brokers  []string // host:port seeds
	ClientID string   // shown in broker logs and quotas; "" means "dktscore"
	TLS      TLS
	SASL     SASL
	// MaxMessageBytes caps one produced record; 0 means DefaultMaxMessageBytes.
	// Raise it only together with the topic's max.message.bytes.
	MaxMessageBytes int32
	// Logger receives kgo's warnings and this package's commit problems;
	// nil means slog.Default().
	Logger *slog.Logger
}

// Validate reports every problem of c in one error wrapping ErrInvalidConfig.
func (c ClientConfig) Validate() error {
	return joinProblems(c.problems())
}

func (c ClientConfig) problems() []error {
	var ps []error
	add := func(format string, args ...any) { ps = append(ps, fmt.Errorf(format, args...)) }

	if len(c.Brokers) == 0 {
		add("Brokers (DKTSCORE_KAFKA_BROKERS) is empty: set it to the comma-separated host:port list of the cluster, e.g. 127.0.0.1:9092 (scripts/kafka-local start runs one)")
	}
	for _, b := range c.Brokers {
		host, port, err := net.SplitHostPort(strings.TrimSpace(b))
		if err != nil || host == "" {
			add("Brokers (DKTSCORE_KAFKA_BROKERS) entry %q is not host:port: write it as host:port, e.g. 127.0.0.1:9092", b)
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			add("Brokers (DKTSCORE_KAFKA_BROKERS) entry %q has port %q: use a port number 1..65535", b, port)
		}
	}
	if c.MaxMessageBytes < 0 {
		add("MaxMessageBytes is %d: use 0 for the broker default (%d) or a positive byte count", c.MaxMessageBytes, DefaultMaxMessageBytes)
	}

	switch strings.ToUpper(c.SASL.Mechanism) {
	case "":
		if c.SASL.User != "" || c.SASL.Password != "" {
			add("SASL user/password (DKTSCORE_KAFKA_SASL_USER/_PASSWORD) are set but SASL.Mechanism (DKTSCORE_KAFKA_SASL_MECHANISM) is empty: set it to %s, %s or %s, or unset the credentials", SASLPlain, SASLScramSHA256, SASLScramSHA512)
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.SASL.User == "" {
			add("SASL.User (DKTSCORE_KAFKA_SASL_USER) is empty but SASL.Mechanism is %s: set the user name", c.SASL.Mechanism)
		}
		if c.SASL.Password == "" {
			add("SASL.Password (DKTSCORE_KAFKA_SASL_PASSWORD) is empty but SASL.Mechanism is %s: set the password", c.SASL.Mechanism)
		}
	default:
		add("SASL.Mechanism (DKTSCORE_KAFKA_SASL_MECHANISM) is %q: use %s, %s, %s or leave it empty for no SASL", c.SASL.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
	}

	t := c.TLS
	if !t.Enabled && (t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify) {
		add("TLS files or TLS.InsecureSkipVerify are set but TLS.Enabled (DKTSCORE_KAFKA_TLS_ENABLED) is false: set it to true, or unset the TLS options")
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		add("TLS.CertFile (DKTSCORE_KAFKA_TLS_CERT_FILE) and TLS.KeyFile (DKTSCORE_KAFKA_TLS_KEY_FILE) must be set together for a client certificate: set both or neither")
	}
	for _, f := range []struct{ field, env, path string }{
		{"TLS.CAFile", "DKTSCORE_KAFKA_TLS_CA_FILE", t.CAFile},
		{"TLS.CertFile", "DKTSCORE_KAFKA_TLS_CERT_FILE", t.CertFile},
		{"TLS.KeyFile", "DKTSCORE_KAFKA_TLS_KEY_FILE", t.KeyFile},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			add("%s (%s) %q cannot be read: %v; point it at an existing PEM file", f.field, f.env, f.path, err)
		}
	}
	return ps
}

// Validate reports every problem of c in one error wrapping ErrInvalidConfig.
func (c ConsumerConfig) Validate() error {
	return joinProblems(c.problems())
}

func (c ConsumerConfig) problems() []error {
	ps := c.Client.problems()
	add := func(format string, args ...any) { ps = append(ps, fmt.Errorf(format, args...)) }
	if strings.TrimSpace(c.Group) == "" {
		add("Group (DKTSCORE_KAFKA_GROUP) is empty: set the consumer group id; committed offsets are stored under it")
	}
	if len(c.Topics) == 0 {
		add("Topics (DKTSCORE_KAFKA_INPUT_TOPIC) is empty: name at least one topic to consume")
	}
	for i, tp := range c.Topics {
		if strings.TrimSpace(tp) == "" {
			add("Topics[%d] (DKTSCORE_KAFKA_INPUT_TOPIC) is empty: remove it or name a topic", i)
		}
	}
	if c.MaxPollRecords < 0 {
		add("MaxPollRecords is %d: use 0 for the default (%d) or a positive count", c.MaxPollRecords, DefaultMaxPollRecords)
	}
	if c.CommitInterval < 0 {
		add("CommitInterval is %v: use 0 for the default (%v) or a positive duration", c.CommitInterval, DefaultCommitInterval)
	}
	return ps
}

// Validate reports every problem of c in one error wrapping ErrInvalidConfig.
func (c TransactConfig) Validate() error {
	ps := c.Consumer.problems()
	if strings.TrimSpace(c.TransactionalID) == "" {
		ps = append(ps, errors.New("TransactionalID (DKTSCORE_KAFKA_TRANSACTIONAL_ID) is empty: set an id that is stable across restarts of this worker and unique among workers (e.g. dktscore-<pod name>)"))
	}
	if c.TransactionTimeout < 0 {
		ps = append(ps, fmt.Errorf("TransactionTimeout is %v: use 0 for the client default (40s) or a positive duration below the broker's transaction.max.timeout.ms (15m by default)", c.TransactionTimeout))
	}
	return joinProblems(ps)
}

func joinProblems(ps []error) error {
	if len(ps) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(ps...))
}

func (c ClientConfig) maxMessageBytes() int32 {
	if c.MaxMessageBytes == 0 {
		return DefaultMaxMessageBytes
	}
	return c.MaxMessageBytes
}

func (c ClientConfig) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.Default()
	}
	return c.Logger
}

// opts translates c into kgo options; c must be valid.
func (c ClientConfig) opts() ([]kgo.Opt, error) {
	brokers := make([]string, len(c.Brokers))
	for i, b := range c.Brokers {
		brokers[i] = strings.TrimSpace(b)
	}
	id := c.ClientID
	if id == "" {
		id = "dktscore"
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.ClientID(id),
		kgo.WithLogger(slogAdapter{c.logger()}),
	}
	if c.TLS.Enabled {
		tc, err := c.TLS.config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch strings.ToUpper(c.SASL.Mechanism) {
	case SASLPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASL.User, Pass: c.SASL.Password}.AsMechanism()))
	case SASLScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASL.User, Pass: c.SASL.Password}.AsSha256Mechanism()))
	case SASLScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASL.User, Pass: c.SASL.Password}.AsSha512Mechanism()))
	}
	return opts, nil
}

func (t TLS) config() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in for test brokers
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: reading TLS.CAFile (DKTSCORE_KAFKA_TLS_CA_FILE): %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka: TLS.CAFile (DKTSCORE_KAFKA_TLS_CA_FILE) %q holds no PEM certificate: point it at the CA bundle that signed the brokers' certificates", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: loading the client certificate TLS.CertFile %q / TLS.KeyFile %q: %w; both must be PEM and match", t.CertFile, t.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// slogAdapter forwards kgo's warnings and errors; its info and debug levels
// narrate every fetch and heartbeat and would drown the worker's own logs.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (a slogAdapter) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelWarn
	if level == kgo.LogLevelError {
		lvl = slog.LevelError
	}
	a.l.Log(context.Background(), lvl, "kafka client: "+msg, keyvals...)
}
