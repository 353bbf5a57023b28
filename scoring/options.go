package scoring

import (
	"fmt"
	"strings"
	"time"

	"github.com/dktscore/dktscore/config"
	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/model"
)

// Options is what `score` is asked to do; Settings declares its flags.
type Options struct {
	Model        string
	Input        string
	Output       string
	InputFormat  string
	OutputFormat string
	Trajectory   bool
	MaxSteps     int
	EmitState    string
	config.Batching
	config.SessionPool
	Tag         string
	Signature   string
	TensorNames string
	Quiet       bool
	CPUProfile  string
	// ShutdownTimeout bounds how long score takes to stop after SIGTERM or
	// SIGINT; the command enforces it (Run stops at its own pace).
	ShutdownTimeout time.Duration
}

// Settings declares score's flags bound to o (bench shares them).
func Settings(o *Options, command string) *config.Set {
	set := config.NewSet(command, config.FlagsOnly)
	str := config.String
	str(set, &o.Model, config.Spec{Flag: "model", Default: "models/dkt",
		Help: "SavedModel: a version directory, or a base directory (highest version wins)"})
	str(set, &o.Input, config.Spec{Flag: "input", Help: "input file (required)"})
	str(set, &o.Output, config.Spec{Flag: "output", Help: "output file (required); rejects go to OUTPUT.rejects.jsonl"})
	str(set, &o.InputFormat, config.Spec{Flag: "input-format",
		Help: "dkt3|csv|jsonl|parquet (default: from the extension; .csv/.txt are sniffed)"})
	str(set, &o.OutputFormat, config.Spec{Flag: "output-format",
		Help: "parquet|arrow (Arrow IPC file) (default: arrow for .arrow/.ipc/.feather, else parquet)"})
	config.Bool(set, &o.Trajectory, config.Spec{Flag: "trajectory",
		Help: "also write per-step mastery rows to OUTPUT's name + .trajectory"})
	str(set, &o.EmitState, config.Spec{Flag: "emit-state",
		Help: "also write each student's LSTM state after the whole history to this Parquet file (event-mode bootstrap; see dktscore state load)"})
	config.Int(set, &o.MaxSteps, config.Spec{Flag: "max-steps", Default: "0",
		Help: "score only the last N interactions of longer histories (0 = whole history)"}).Check(config.NotNegative[int])
	// A file is read faster than any delay: the delay only matters for the
	// last, partly filled batches.
	config.DeclareBatching(set, &o.Batching, config.Defaults{MaxDelay: 200 * time.Millisecond, BucketGrowth: config.Measured.BucketGrowth})
	config.DeclareSessions(set, &o.SessionPool)
	str(set, &o.Tag, config.Spec{Flag: "tag", Default: "serve", Help: "SavedModel meta graph tag"})
	str(set, &o.Signature, config.Spec{Flag: "signature",
		Help: "signature to run (default: predict_ids when the model has it, else predict)"})
	str(set, &o.TensorNames, config.Spec{Flag: "tensor-names",
		Help: "signature keys when they differ from the bundled model's, e.g. input_x=x,skill_id=skills,pred_all=probs"}).
		Check(func(s string) error {
			if _, err := parseTensorNames(s); err != nil {
				return fmt.Errorf("is not valid: %w", err)
			}
			return nil
		})
	config.Bool(set, &o.Quiet, config.Spec{Flag: "quiet", Help: "no progress bar"})
	config.Duration(set, &o.ShutdownTimeout, config.Spec{Flag: "shutdown-timeout", Default: "10s",
		Help: "after SIGTERM or SIGINT, exit at the latest this long after the signal, even if a stage has not stopped (no output is replaced either way)"}).Check(config.Positive[time.Duration])
	str(set, &o.CPUProfile, config.Spec{Flag: "cpuprofile",
		Help: "write a Go CPU profile of the run to this file (go tool pprof)"})
	return set
}

// LoadModel loads the model with the session pool and threads o asks for.
func LoadModel(o Options) (*model.Model, error) {
	names, err := parseTensorNames(o.TensorNames)
	if err != nil {
		return nil, fmt.Errorf("--tensor-names: %w", err)
	}
	sessionConfig, err := gpu.SessionConfig{IntraOpThreads: gpu.ThreadsPerSession(o.Threads, o.Sessions)}.ConfigProto()
	if err != nil {
		return nil, err
	}
	return model.Load(model.Config{Path: o.Model, Tag: o.Tag, Signature: o.Signature, Names: names,
		Sessions: o.Sessions, SessionConfig: sessionConfig})
}

func parseTensorNames(spec string) (model.Names, error) {
	var n model.Names
	if spec == "" {
		return n, nil
	}
	fields := map[string]*string{
		"input_x": &n.InputX, "target_id": &n.TargetID, "max_steps": &n.MaxSteps, "sequence_len": &n.SequenceLen,
		"keep_prob": &n.KeepProb, "batch_size": &n.BatchSize, "pred_all": &n.PredAll,
		"skill_id": &n.SkillID, "correct": &n.Correct,
	}
	for _, pair := range strings.Split(spec, ",") {
		contract, key, ok := strings.Cut(pair, "=")
		field, known := fields[strings.TrimSpace(contract)]
		if !ok || !known || key == "" {
			return n, fmt.Errorf("%q is not CONTRACT=KEY with CONTRACT one of input_x, target_id, max_steps, sequence_len, keep_prob, batch_size, pred_all, skill_id, correct", pair)
		}
		*field = strings.TrimSpace(key)
	}
	return n, nil
}
