package modelserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func resolve(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	var c Config
	_, err := Settings(&c).Resolve(append([]string{"--model_base_path=/m"}, args...), nil)
	return c, err
}

func paramsFile(t *testing.T, text string) string {
	path := filepath.Join(t.TempDir(), "batching.txt")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTensorflowModelServersFlagsAndDefaults(t *testing.T) {
	c, err := resolve(t, "--port=8500", "--rest_api_port=8501", "--model_name=builder")
	if err != nil {
		t.Fatal(err)
	}
	if c.GRPCPort != 8500 || c.RESTPort != 8501 || c.ModelName != "builder" || c.ModelBasePath != "/m" || !c.EnableBatching || c.PollSeconds != 1 {
		t.Fatalf("config %+v", c)
	}
	if c, _ := resolve(t); c.RESTPort != 0 || c.GRPCPort != 8500 || c.ModelName != "default" {
		t.Fatalf("defaults %+v, want TF Serving's: REST off, gRPC 8500, model default", c)
	}
}

func TestBatchingParametersMapOntoTheBatcher(t *testing.T) {
	path := paramsFile(t, "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 1500 }\nmax_enqueued_batches { value: 8 }\nnum_batch_threads { value: 3 }\n")
	c, err := resolve(t, "--batching_parameters_file="+path, "--batch-size=4")
	if err != nil {
		t.Fatal(err)
	}
	if c.BatchSize != 32 || c.MaxDelay != 1500*time.Microsecond || c.MaxQueuedSequences != 32*8 || c.Sessions != 3 {
		t.Fatalf("batch %d delay %v queue %d sessions %d; want 32, 1.5ms, 256, 3 (the file wins)", c.BatchSize, c.MaxDelay, c.MaxQueuedSequences, c.Sessions)
	}
	c, err = resolve(t, "--batching_parameters_file="+paramsFile(t, "batch_timeout_micros { value: 0 }"))
	if err != nil || c.MaxDelay != time.Microsecond {
		t.Fatalf("timeout 0: delay %v, err %v; want TF Serving's 0 accepted as 1µs", c.MaxDelay, err)
	}
	if c, _ := resolve(t, "--enable_batching=false", "--batching_parameters_file="+path); c.BatchSize != 1 {
		t.Fatalf("--enable_batching=false: batch size %d, want 1", c.BatchSize)
	}
}

func TestBatchingParametersRefuseWhatTheyCannotHonour(t *testing.T) {
	for text, want := range map[string]string{
		"allowed_batch_sizes: 8\nallowed_batch_sizes: 16": "allowed_batch_sizes",
		"pad_variable_length_inputs: true":                "pad_variable_length_inputs",
		"thread_pool_name { value: \"x\" }":               "thread_pool_name",
		"max_batch_sise { value: 3 }":                     "max_batch_sise",
		"max_batch_size { value: 0 }":                     "max_batch_size is 0",
		"num_batch_threads { value: -2 }":                 "num_batch_threads is -2",
	} {
		if _, err := resolve(t, "--batching_parameters_file="+paramsFile(t, text)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want one naming %q", text, err, want)
		}
	}
	if _, err := resolve(t, "--batching_parameters_file=/nonexistent"); err == nil || !strings.Contains(err.Error(), "--batching_parameters_file") {
		t.Errorf("missing file: err %v", err)
	}
}

func TestModelServerConfigProblems(t *testing.T) {
	var c Config
	_, err := Settings(&c).Resolve([]string{"--port=8500", "--rest_api_port=8500", "--model_config_file=x"}, nil)
	for _, want := range []string{"flag provided but not defined: -model_config_file", "DKTSCORE_MODEL_BASE_PATH (--model_base_path) is empty", "--rest_api_port 8500 is also --port"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err %v, want %q", err, want)
		}
	}
}
