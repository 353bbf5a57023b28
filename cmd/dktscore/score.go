package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dktscore/dktscore/batching"
	"github.com/dktscore/dktscore/gpu"
	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/records"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/worker"
)

type scoreFlags struct {
	model, input, output, inputFormat, outputFormat string
	trajectory                                      bool
	maxSteps                                        int
	batchSize, maxPaddedSteps                       int
	maxDelay                                        time.Duration
	bucketGrowth                                    float64
	sessions, threads                               int
	tag, signature, tensorNames                     string
	quiet                                           bool
	cpuProfile                                      string
	emitState                                       string // emitstate.go
}

func (f *scoreFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.model, "model", "models/dkt", "SavedModel: a version directory, or a base directory (highest version wins)")
	fs.StringVar(&f.input, "input", "", "input file (required)")
	fs.StringVar(&f.output, "output", "", "output file (required); rejects go to OUTPUT.rejects.jsonl")
	fs.StringVar(&f.inputFormat, "input-format", "", "dkt3|csv|jsonl|parquet (default: from the extension; .csv/.txt are sniffed)")
	fs.StringVar(&f.outputFormat, "output-format", "", "parquet|arrow (Arrow IPC file) (default: arrow for .arrow/.ipc/.feather, else parquet)")
	fs.BoolVar(&f.trajectory, "trajectory", false, "also write per-step mastery rows to OUTPUT's name + .trajectory")
	fs.StringVar(&f.emitState, "emit-state", "", "also write each student's LSTM state after the whole history to this Parquet file (event-mode bootstrap; see dktscore state load)")
	fs.IntVar(&f.maxSteps, "max-steps", 0, "score only the last N interactions of longer histories (0 = whole history)")
	// Batch policy and threads: measured defaults, the same as serve's (BENCHMARKS.md, "Tuning").
	fs.IntVar(&f.batchSize, "batch-size", 64, "most sequences per batch")
	fs.IntVar(&f.maxPaddedSteps, "max-padded-steps", 32*1024, "most batch_size×max_steps per batch (bounds memory per batch)")
	fs.DurationVar(&f.maxDelay, "max-delay", 200*time.Millisecond, "longest a partly filled batch waits for more sequences")
	fs.Float64Var(&f.bucketGrowth, "bucket-growth", batching.DefaultBucketGrowth, "longest÷shortest sequence allowed in one batch, in (1, 2]")
	fs.IntVar(&f.sessions, "sessions", 2, "TensorFlow sessions scoring batches concurrently")
	fs.IntVar(&f.threads, "threads", 0, "intra-op threads per session (0 = cores ÷ sessions)")
	fs.StringVar(&f.tag, "tag", "serve", "SavedModel meta graph tag")
	fs.StringVar(&f.signature, "signature", "", "signature to run (default: predict_ids when the model has it, else predict)")
	fs.StringVar(&f.tensorNames, "tensor-names", "", "signature keys when they differ from the bundled model's, e.g. input_x=x,skill_id=skills,pred_all=probs")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress bar")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a Go CPU profile of the run to this file (go tool pprof)")
}

func scoreCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("score", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f scoreFlags
	f.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: dktscore score --model M --input F --output O [flags]\n\n"+
			"Scores every student in F and writes mastery after their latest interaction to O.\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if f.input == "" || f.output == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "dktscore score: --input and --output are required (and nothing else on the command line)")
		fs.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopProfile, err := startCPUProfile(f.cpuProfile)
	if err != nil {
		fmt.Fprintf(stderr, "dktscore score: %v\n", err)
		return 2
	}
	defer stopProfile()
	if err := score(ctx, f, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "dktscore score: %v\n", err)
		return 1
	}
	return 0
}

func score(ctx context.Context, f scoreFlags, stdout, stderr io.Writer) error {
	outFormat, err := outputFormat(f.output, f.outputFormat)
	if err != nil {
		return err
	}
	m, err := loadModel(f)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := checkEmitState(f, m); err != nil {
		return err
	}

	input, err := openInput(f.input, f.inputFormat, m.NumSkills)
	if err != nil {
		return err
	}
	defer input.Close()

	if err := os.MkdirAll(filepath.Dir(f.output), 0o755); err != nil {
		return err
	}
	outCfg := columnar.Config{NumSkills: m.NumSkills, ModelVersion: m.Name + "/" + m.Version, Format: outFormat}
	mastery, err := columnar.CreateMasteryFile(f.output, outCfg)
	if err != nil {
		return err
	}
	sink := worker.ColumnarSink{Mastery: mastery}
	trajectoryPath := ""
	if f.trajectory {
		trajectoryPath = trajectoryName(f.output)
		if sink.Trajectory, err = columnar.CreateTrajectoryFile(trajectoryPath, outCfg); err != nil {
			mastery.Abort()
			return err
		}
	}
	rejectsPath := f.output + ".rejects.jsonl"
	rejectsFile, err := os.Create(rejectsPath)
	if err != nil {
		mastery.Abort()
		if sink.Trajectory != nil {
			sink.Trajectory.Abort()
		}
		return err
	}
	defer rejectsFile.Close()

	cfg := worker.Config{
		Batching: batching.Config{NumSkills: m.NumSkills, MaxBatchSize: f.batchSize, MaxDelay: f.maxDelay,
			MaxPaddedSteps: f.maxPaddedSteps, BucketGrowth: f.bucketGrowth},
		Engines: f.sessions, MaxSteps: f.maxSteps, Trajectory: f.trajectory,
	}
	var progress worker.Progress
	bar := startProgress(stderr, !f.quiet, input, &progress)
	sum, runErr := worker.Run(ctx, cfg, worker.RecordSource{Reader: input}, modelEngine{model.FixedVersion(m)}, sink,
		worker.RejectLogSink{Log: records.NewRejectLog(rejectsFile)}, &progress)
	bar.stop()
	if runErr != nil {
		mastery.Abort()
		if sink.Trajectory != nil {
			sink.Trajectory.Abort()
		}
		if errors.Is(runErr, context.Canceled) {
			return fmt.Errorf("interrupted after %d students; %s was not written", sum.Students, f.output)
		}
		return runErr
	}
	closeErr := mastery.Close()
	if sink.Trajectory != nil {
		closeErr = errors.Join(closeErr, sink.Trajectory.Close())
	}
	if err := errors.Join(closeErr, rejectsFile.Close()); err != nil {
		return err
	}
	printSummary(stdout, sum, f, outFormat, trajectoryPath, rejectsPath)
	fmt.Fprintf(stdout, "model=%s/%s signature=%s\n", m.Name, m.Version, m.Signature)
	if f.emitState != "" {
		return emitStates(ctx, m, f, stdout)
	}
	return nil
}

// loadModel loads the model with the session pool and threads the flags ask for.
func loadModel(f scoreFlags) (*model.Model, error) {
	names, err := parseTensorNames(f.tensorNames)
	if err != nil {
		return nil, err
	}
	sessionConfig, err := gpu.SessionConfig{IntraOpThreads: gpu.ThreadsPerSession(f.threads, f.sessions)}.ConfigProto()
	if err != nil {
		return nil, err
	}
	return model.Load(model.Config{Path: f.model, Tag: f.tag, Signature: f.signature, Names: names,
		Sessions: f.sessions, SessionConfig: sessionConfig})
}

func printSummary(w io.Writer, s worker.Summary, f scoreFlags, format columnar.Format, trajectoryPath, rejectsPath string) {
	secs := s.Wall.Seconds()
	fmt.Fprintf(w, "students=%d interactions=%d rejected=%d", s.Students, s.Interactions, s.Rejected)
	if f.maxSteps > 0 {
		fmt.Fprintf(w, " windowed=%d (max-steps %d)", s.Windowed, f.maxSteps)
	}
	fmt.Fprintf(w, "\nwall=%.2fs sequences/s=%.1f interactions/s=%.0f\n", secs, float64(s.Students)/secs, float64(s.Interactions)/secs)
	fmt.Fprintf(w, "padding_efficiency=%.4f (real %d / computed %d steps) batches=%d flushes: size=%d bucket=%d delay=%d drain=%d\n",
		s.PaddingEfficiency(), s.RealSteps, s.Computed, s.Batches,
		s.Flushes["size"], s.Flushes["bucket"], s.Flushes["delay"], s.Flushes["drain"])
	if s.HasAUC {
		fmt.Fprintf(w, "auc=%.4f (pooled next-step over all real steps)\n", s.AUC)
	} else {
		fmt.Fprintln(w, "auc=n/a (needs both correct and incorrect next answers)")
	}
	fmt.Fprintf(w, "output=%s (%s)", f.output, format)
	if trajectoryPath != "" {
		fmt.Fprintf(w, " trajectory=%s", trajectoryPath)
	}
	fmt.Fprintf(w, " rejects=%s\n", rejectsPath)
}

func outputFormat(path, flagValue string) (columnar.Format, error) {
	if flagValue != "" {
		return columnar.ParseFormat(flagValue)
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".arrow", ".ipc", ".feather":
		return columnar.FormatArrow, nil
	}
	return columnar.FormatParquet, nil
}

// trajectoryName turns out/x.parquet into out/x.trajectory.parquet.
func trajectoryName(output string) string {
	ext := filepath.Ext(output)
	return strings.TrimSuffix(output, ext) + ".trajectory" + ext
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
			return n, fmt.Errorf("--tensor-names: %q is not CONTRACT=KEY with CONTRACT one of input_x, target_id, max_steps, sequence_len, keep_prob, batch_size, pred_all, skill_id, correct", pair)
		}
		*field = strings.TrimSpace(key)
	}
	return n, nil
}
