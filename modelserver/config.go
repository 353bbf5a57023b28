package modelserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/protobuf/encoding/prototext"

	sessionpb "github.com/wamuir/graft/tensorflow/serving/servables/tensorflow_go_proto"

	"github.com/dktscore/dktscore/config"
)

// Config is model-server's configuration: tensorflow_model_server's own
// flags (so the origin's command line works with the binary name changed),
// dktscore's batching and process settings, each also a DKTSCORE_* variable.
type Config struct {
	GRPCPort               int
	RESTPort               int
	ModelName              string
	ModelBasePath          string
	EnableBatching         bool
	BatchingParametersFile string
	PollSeconds            int
	RESTTimeoutMillis      int
	MaxRequestBytes        int
	MaxQueuedSequences     int
	SSLConfigFile          string
	// TLS is read from SSLConfigFile when the settings are resolved; nil
	// serves plaintext.
	TLS *tls.Config
	config.Batching
	config.SessionPool
	config.GPU
	config.Process
}

// Settings declares every setting of model-server, bound to c.
func Settings(c *Config) *config.Set {
	set := config.NewSet("dktscore model-server", config.FromEnvironment)
	port := func(p int) error {
		if p < 0 || p > 65535 {
			return errors.New("is not a port number in [0, 65535]")
		}
		return nil
	}
	config.Int(set, &c.GRPCPort, config.Spec{Env: "GRPC_PORT", Flag: "port", Default: "8500",
		Help: "gRPC port of the TF Serving API (tensorflow.serving.PredictionService, ModelService, grpc.health.v1.Health)"}).Check(port)
	config.Int(set, &c.RESTPort, config.Spec{Env: "REST_API_PORT", Flag: "rest_api_port", Default: "0",
		Help: "REST port of the TF Serving API (/v1/models/...); 0 = no REST, as TF Serving"}).Check(port)
	config.String(set, &c.ModelName, config.Spec{Env: "MODEL_NAME", Flag: "model_name", Default: "default",
		Help: "the model's name in requests (model_spec.name, /v1/models/NAME)"})
	config.String(set, &c.ModelBasePath, config.Spec{Env: "MODEL_BASE_PATH", Flag: "model_base_path",
		Help: "SavedModel base directory in NAME/VERSION layout (required); the highest version is served and newer ones are loaded as they appear"}).
		Check(func(s string) error {
			if s == "" {
				return errors.New("is empty; name the model's base directory, e.g. /models/dkt (it holds version directories 1, 2, ...)")
			}
			return nil
		})
	config.Bool(set, &c.EnableBatching, config.Spec{Env: "ENABLE_BATCHING", Flag: "enable_batching", Default: "true",
		Help: "batch sequences across requests; false scores each sequence alone, as TF Serving must for this signature"})
	config.String(set, &c.BatchingParametersFile, config.Spec{Env: "BATCHING_PARAMETERS_FILE", Flag: "batching_parameters_file",
		Help: "TF Serving BatchingParameters text proto: max_batch_size, batch_timeout_micros, max_enqueued_batches, num_batch_threads (overrides the batching settings below)"})
	config.String(set, &c.SSLConfigFile, config.Spec{Env: "SSL_CONFIG_FILE", Flag: "ssl_config_file",
		Help: "TF Serving SSLConfig text proto (server_key, server_cert, custom_ca as PEM text, client_verify): gRPC and REST serve TLS 1.2+ with that certificate; client_verify: true requires client certificates signed by custom_ca on both (custom_ca is unused without it); the DKTSCORE_HTTP_ADDR endpoint stays plain HTTP"})
	config.Int(set, &c.PollSeconds, config.Spec{Env: "FILE_SYSTEM_POLL_WAIT_SECONDS", Flag: "file_system_poll_wait_seconds", Default: "1",
		Help: "how often the base path is checked for new versions, in seconds; 0 = never"}).Check(config.NotNegative[int])
	config.Int(set, &c.RESTTimeoutMillis, config.Spec{Env: "REST_API_TIMEOUT_IN_MS", Flag: "rest_api_timeout_in_ms", Default: "30000",
		Help: "deadline of a REST request in milliseconds"}).Check(config.Positive[int])
	config.Int(set, &c.MaxRequestBytes, config.Spec{Env: "MAX_REQUEST_BYTES", Flag: "max-request-bytes", Default: fmt.Sprint(32 << 20),
		Help: "largest gRPC message or REST body accepted; larger ones are refused (RESOURCE_EXHAUSTED, HTTP 413)"}).Check(config.AtLeast(1024))
	config.Int(set, &c.MaxQueuedSequences, config.Spec{Env: "MAX_QUEUED_SEQUENCES", Flag: "max-queued-sequences", Default: "1024",
		Help: "most sequences waiting for the batcher; a request that does not fit is refused at once (RESOURCE_EXHAUSTED, HTTP 429)"}).Check(config.AtLeast(1))
	// An idle session takes what waits at once (FlushWhenIdle), so the
	// delay only bounds how long a short bucket may be passed over for
	// fuller ones while both sessions are busy; and one client's sequence
	// length says nothing about the next one's, so wide buckets let the
	// requests that gather meanwhile share a batch.
	config.DeclareBatching(set, &c.Batching, config.Defaults{MaxDelay: 50 * time.Millisecond, BucketGrowth: 2})
	config.DeclareSessions(set, &c.SessionPool)
	config.DeclareGPU(set, &c.GPU, "all, none, or GPU indices like 0,2: the first selected GPU runs the sessions")
	config.DeclareProcess(set, &c.Process, "bound on answering the requests in flight after SIGTERM")
	set.Check(func() error {
		if c.RESTPort != 0 && c.RESTPort == c.GRPCPort {
			return fmt.Errorf("--rest_api_port %d is also --port; gRPC and REST need ports of their own", c.RESTPort)
		}
		return nil
	})
	set.Check(c.applyBatchingParameters)
	set.Check(func() (err error) {
		c.TLS = nil
		if c.SSLConfigFile != "" {
			c.TLS, err = readSSLConfig(c.SSLConfigFile)
		}
		return err
	})
	return set
}

// applyBatchingParameters reads --batching_parameters_file over the
// batching settings, and --enable_batching=false over both.
func (c *Config) applyBatchingParameters() error {
	if c.BatchingParametersFile != "" {
		if err := c.readBatchingParameters(c.BatchingParametersFile); err != nil {
			return err
		}
	}
	if !c.EnableBatching {
		c.BatchSize = 1
	}
	return nil
}

// readBatchingParameters maps TF Serving's BatchingParameters onto the
// batcher. Fields with no counterpart are refused by name rather than
// ignored: a setting that silently did nothing would mislead.
//
//	max_batch_size       → sequences per batch (--batch-size)
//	batch_timeout_micros → longest a partly filled batch waits while every session is busy (--max-delay; 0 = 1µs)
//	max_enqueued_batches → × max_batch_size: sequences waiting for the batcher (--max-queued-sequences)
//	num_batch_threads    → concurrent TensorFlow sessions (--sessions)
func (c *Config) readBatchingParameters(path string) error {
	text, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--batching_parameters_file: %w", err)
	}
	var p sessionpb.BatchingParameters
	if err := (prototext.UnmarshalOptions{}).Unmarshal(text, &p); err != nil {
		return fmt.Errorf("--batching_parameters_file %s is not a BatchingParameters text proto: %w", path, err)
	}
	var unsupported []string
	if p.ThreadPoolName != nil {
		unsupported = append(unsupported, "thread_pool_name")
	}
	if p.EnableLargeBatchSplitting != nil {
		unsupported = append(unsupported, "enable_large_batch_splitting")
	}
	if p.MaxExecutionBatchSize != nil {
		unsupported = append(unsupported, "max_execution_batch_size")
	}
	if len(p.AllowedBatchSizes) > 0 {
		unsupported = append(unsupported, "allowed_batch_sizes")
	}
	if p.PadVariableLengthInputs {
		unsupported = append(unsupported, "pad_variable_length_inputs")
	}
	if len(unsupported) > 0 {
		return fmt.Errorf("--batching_parameters_file %s sets %v, which dktscore does not support: it batches by sequence length itself (no fixed batch sizes, no padding to them); remove the field", path, unsupported)
	}
	positive := func(name string, v int64) error {
		if v < 1 {
			return fmt.Errorf("--batching_parameters_file %s: %s is %d; it must be at least 1", path, name, v)
		}
		return nil
	}
	var errs []error
	if p.MaxBatchSize != nil {
		errs = append(errs, positive("max_batch_size", p.MaxBatchSize.Value))
		c.BatchSize = int(p.MaxBatchSize.Value)
	}
	if p.BatchTimeoutMicros != nil {
		micros := p.BatchTimeoutMicros.Value
		if micros < 0 {
			errs = append(errs, fmt.Errorf("--batching_parameters_file %s: batch_timeout_micros is %d; it must not be negative", path, micros))
		}
		// TF Serving's 0 means "never wait for more"; the batcher needs a
		// positive delay, and one microsecond is the same in practice.
		c.MaxDelay = time.Duration(max(micros, 1)) * time.Microsecond
	}
	if p.MaxEnqueuedBatches != nil {
		errs = append(errs, positive("max_enqueued_batches", p.MaxEnqueuedBatches.Value))
		c.MaxQueuedSequences = int(p.MaxEnqueuedBatches.Value) * c.BatchSize
	}
	if p.NumBatchThreads != nil {
		errs = append(errs, positive("num_batch_threads", p.NumBatchThreads.Value))
		c.Sessions = int(p.NumBatchThreads.Value)
	}
	return errors.Join(errs...)
}
