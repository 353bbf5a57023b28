package scoring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dktscore/dktscore/engine"
	"github.com/dktscore/dktscore/io/columnar"
	"github.com/dktscore/dktscore/io/records"
	"github.com/dktscore/dktscore/model"
	"github.com/dktscore/dktscore/worker"
)

// Run scores every student of o.Input and writes their mastery after the
// latest interaction to o.Output (and the trajectory, rejects and states o
// asks for), then prints the summary on stdout; the progress bar goes to
// stderr.
//
// Outputs are all-or-nothing per run: each is written under a temporary name
// and they are moved into place together, only once every one is complete,
// so a failed or interrupted run leaves the previous run's files as they
// were. The one exception is a read error in the middle of the input: what
// was scored before it is written (all outputs, together), and Run returns
// an error naming where the input broke.
//
// When ctx ends (SIGTERM, SIGINT) Run stops at whatever stage it is in and
// returns an error saying which: a model load is abandoned rather than
// awaited (TensorFlow cannot interrupt it), a read waiting on a pipe is cut
// off by closing the input, and queued students are drained and discarded.
func Run(ctx context.Context, o Options, stdout, stderr io.Writer) error {
	outFormat, err := outputFormat(o.Output, o.OutputFormat)
	if err != nil {
		return err
	}
	if err := CheckPaths(o); err != nil {
		return err
	}
	m, err := loadModel(ctx, o)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := o.Batching.CheckModel(m.NumSkills); err != nil {
		return fmt.Errorf("model %s/%s: %w", m.Name, m.Version, err)
	}
	if err := checkEmitState(o, m); err != nil {
		return err
	}

	input, err := openInput(ctx, o.Input, o.InputFormat, m.NumSkills)
	if err != nil {
		if ctx.Err() != nil {
			return interrupted(fmt.Sprintf("waiting for --input %s (a named pipe or stdin waits for a writer and its first line)", o.Input), o)
		}
		return err
	}
	defer input.Close()
	// A read blocked on a pipe nobody writes to returns once the file is closed.
	stopWatching := context.AfterFunc(ctx, input.closeFile)
	defer stopWatching()

	if err := os.MkdirAll(filepath.Dir(o.Output), 0o755); err != nil {
		return fmt.Errorf("cannot create the directory of --output %s: %w", o.Output, pathErrCause(err))
	}
	var outs stagedOutputs
	defer outs.discard()
	files := outputFiles(o)
	staged := make(map[string]string, len(files)) // destination -> temporary name
	for _, f := range files {
		if staged[f.path], err = outs.stage(f.path, f.what); err != nil {
			return err
		}
	}
	outCfg := columnar.Config{NumSkills: m.NumSkills, ModelVersion: m.Name + "/" + m.Version, Format: outFormat}
	mastery, err := columnar.CreateMasteryFile(staged[o.Output], outCfg)
	if err != nil {
		return fmt.Errorf("--output %s: %w", o.Output, err)
	}
	sink := worker.ColumnarSink{Mastery: mastery}
	abort := func() {
		mastery.Abort()
		if sink.Trajectory != nil {
			sink.Trajectory.Abort()
		}
	}
	trajectoryPath := ""
	if o.Trajectory {
		trajectoryPath = trajectoryName(o.Output)
		if sink.Trajectory, err = columnar.CreateTrajectoryFile(staged[trajectoryPath], outCfg); err != nil {
			abort()
			return fmt.Errorf("trajectory file %s: %w", trajectoryPath, err)
		}
	}
	rejectsPath := rejectsName(o.Output)
	rejectsFile, err := os.OpenFile(staged[rejectsPath], os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		abort()
		return fmt.Errorf("cannot write the rejects file %s: %w", rejectsPath, pathErrCause(err))
	}
	defer rejectsFile.Close()

	cfg := worker.Config{Batching: o.Batching.Config(m.NumSkills), Engines: o.Sessions, MaxSteps: o.MaxSteps, Trajectory: o.Trajectory}
	var progress worker.Progress
	bar := startProgress(stderr, !o.Quiet, input, &progress)
	source := &inputSource{RecordSource: worker.RecordSource{Reader: input}}
	sum, runErr := worker.Run(ctx, cfg, source, engine.Of(model.FixedVersion(m)), sink,
		worker.RejectLogSink{Log: records.NewRejectLog(rejectsFile)}, &progress)
	bar.stop()
	if ctx.Err() != nil {
		abort()
		return interrupted(fmt.Sprintf("scoring (%d students scored, %d rejected so far)", sum.Students, sum.Rejected), o)
	}
	if runErr != nil {
		abort()
		return fmt.Errorf("%w; no output was replaced", runErr)
	}
	closeErr := mastery.Close()
	if sink.Trajectory != nil {
		closeErr = errors.Join(closeErr, sink.Trajectory.Close())
	}
	closeErr = errors.Join(closeErr, rejectsFile.Sync(), rejectsFile.Close())
	if closeErr != nil {
		abort()
		return fmt.Errorf("%w; no output was replaced", closeErr)
	}
	var emitted *emitSummary
	if o.EmitState != "" {
		if emitted, err = emitStates(ctx, m, o, staged[o.EmitState], source.err != nil); err != nil {
			if ctx.Err() != nil {
				return interrupted("writing --emit-state", o)
			}
			return fmt.Errorf("%w; no output was replaced", err)
		}
	}
	if ctx.Err() != nil {
		return interrupted("finishing the outputs", o)
	}
	if err := outs.commit(); err != nil {
		return err
	}
	printSummary(stdout, sum, o, outFormat, trajectoryPath, rejectsPath)
	fmt.Fprintf(stdout, "model=%s/%s signature=%s\n", m.Name, m.Version, m.Signature)
	if emitted != nil {
		emitted.print(stdout, m, o)
	}
	if source.err != nil {
		return fmt.Errorf("%w\nthe %d students scored and %d rejects before that point are written to %s and %s; the input after it was not read",
			source.err, sum.Students, sum.Rejected, o.Output, rejectsPath)
	}
	if sum.Students == 0 && sum.Rejected > 0 {
		return allRejected(sum.Rejected, o, rejectsPath)
	}
	return nil
}

// interrupted is the error of a run stopped by a signal during stage.
func interrupted(stage string, o Options) error {
	return fmt.Errorf("interrupted while %s: no output was replaced (--output %s and the files beside it are the previous run's, if any)", stage, o.Output)
}

// loadModel is LoadModel that returns when ctx ends. TensorFlow cannot
// interrupt a SavedModel load, so the load is abandoned, not awaited: it
// finishes in the background and the model is closed then.
func loadModel(ctx context.Context, o Options) (*model.Model, error) {
	type loaded struct {
		m   *model.Model
		err error
	}
	done := make(chan loaded, 1)
	go func() {
		m, err := LoadModel(o)
		done <- loaded{m, err}
	}()
	select {
	case l := <-done:
		return l.m, l.err
	case <-ctx.Done():
		go func() {
			if l := <-done; l.m != nil {
				l.m.Close()
			}
		}()
		return nil, interrupted("loading the model "+o.Model, o)
	}
}

// inputSource is the input as the worker's source. A read error in the
// middle of the input (a damaged Parquet page, a disk error) ends the
// source as if the input ended there, so that everything read before it
// is still scored and written; Run reports the error afterwards. Read is
// called from one goroutine, and err is read after worker.Run returns.
type inputSource struct {
	worker.RecordSource
	err error
}

func (s *inputSource) Read(ctx context.Context) (worker.Work, worker.Ack, error) {
	w, ack, err := s.RecordSource.Read(ctx)
	if err != nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
		s.err = err
		return worker.Work{}, nil, io.EOF
	}
	return w, ack, err
}

// allRejected is the error of a run that read records but scored none: the
// input is almost certainly in another format or for another model.
func allRejected(n int64, o Options, rejectsPath string) error {
	hint := "check the input's format (--input-format) and that its skill ids fit the model"
	if o.InputFormat != "" {
		hint = fmt.Sprintf("--input-format %s was given: check that %s is in that format, or leave the flag out to detect it", o.InputFormat, o.Input)
	}
	return fmt.Errorf("all %d records of %s were rejected, nothing was scored; the reason for each is in %s; %s", n, o.Input, rejectsPath, hint)
}

func printSummary(w io.Writer, s worker.Summary, o Options, format columnar.Format, trajectoryPath, rejectsPath string) {
	secs := s.Wall.Seconds()
	fmt.Fprintf(w, "students=%d interactions=%d rejected=%d", s.Students, s.Interactions, s.Rejected)
	if o.MaxSteps > 0 {
		fmt.Fprintf(w, " windowed=%d (max-steps %d)", s.Windowed, o.MaxSteps)
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
	fmt.Fprintf(w, "output=%s (%s)", o.Output, format)
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
