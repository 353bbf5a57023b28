// Command dktscore scores Deep Knowledge Tracing models: see `dktscore help`.
package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/dktscore/dktscore/config"
	"github.com/dktscore/dktscore/serving"
)

const usage = `dktscore scores student interaction histories with a Deep Knowledge Tracing SavedModel.

Usage:
  dktscore inspect MODEL                 show tags, signatures, tensors and num_skills
  dktscore score --model M --input F --output O [flags]
                                         score a file, write mastery as Parquet or Arrow
  dktscore serve [flags]                 score JSON sequence records from Kafka (DKTSCORE_* env)
  dktscore model-server --port=8500 --model_name=NAME --model_base_path=DIR [flags]
                                         TensorFlow Serving's gRPC/REST API, batching requests together
  dktscore bench [flags]                 time the engine over pre-built batches (see make bench)
  dktscore state load --input F --partitions N --partitioner murmur2|crc32
                                         load score --emit-state's states into the changelog (event mode)
  dktscore help                          this text

Run 'dktscore COMMAND --help' for a command's flags.
`

func main() {
	quietTensorFlow()
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// quietTensorFlow keeps TensorFlow's C++ logging to warnings and errors unless
// the operator set TF_CPP_MIN_LOG_LEVEL. TF reads the variable while its library
// initialises, before main runs, so the process re-executes itself once with it set.
func quietTensorFlow() {
	if _, set := os.LookupEnv("TF_CPP_MIN_LOG_LEVEL"); set {
		return
	}
	os.Setenv("TF_CPP_MIN_LOG_LEVEL", "1")
	if self, err := os.Executable(); err == nil {
		syscall.Exec(self, os.Args, os.Environ()) // returns only on failure: run on, just noisier
	}
}

// run returns the process exit code: 0 success, 1 failure, 2 usage error.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "inspect":
		return inspectCmd(args[1:], stdout, stderr)
	case "score":
		return scoreCmd(args[1:], stdout, stderr)
	case "serve":
		return serveCmd(args[1:], stdout, stderr)
	case "model-server":
		return modelServerCmd(args[1:], stdout, stderr)
	case "bench":
		return benchCmd(args[1:], stdout, stderr)
	case "state":
		return stateCmd(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "dktscore: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

// writeProblems prints an invalid configuration: one line per problem, then
// the unknown variables as warnings.
func writeProblems(w io.Writer, command string, err error, unknown []config.Unknown) {
	fmt.Fprintf(w, "%s: invalid configuration:\n", command)
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintf(w, "  - %s\n", line)
	}
	for _, u := range unknown {
		fmt.Fprintf(w, "  - warning: %s\n", u.Warning(command))
	}
	fmt.Fprintf(w, "Run '%s --help' for every setting with its default and meaning.\n", command)
}

// withoutServeVariables drops the variables serve reads from unknown: a
// deployment sets them for its workers, and another command that shares the
// environment should not call them typos.
func withoutServeVariables(unknown []config.Unknown) []config.Unknown {
	var cfg serving.Config
	names := serving.Settings(&cfg).Names()
	return slices.DeleteFunc(unknown, func(u config.Unknown) bool { return slices.Contains(names, u.Name) })
}
