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
func Run(ctx context.Context, o Options, stdout, stderr io.Writer) error {
	outFormat, err := outputFormat(o.Output, o.OutputFormat)
	if err != nil {
		return err
	}
	if err := CheckPaths(o); err != nil {
		return err
	}
	m, err := LoadModel(o)
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

	input, err := OpenInput(o.Input, o.InputFormat, m.NumSkills)
	if err != nil {
		return err
	}
	defer input.Close()

	if err := os.MkdirAll(filepath.Dir(o.Output), 0o755); err != nil {
		return err
	}
	outCfg := columnar.Config{NumSkills: m.NumSkills, ModelVersion: m.Name + "/" + m.Version, Format: outFormat}
	mastery, err := columnar.CreateMasteryFile(o.Output, outCfg)
	if err != nil {
		return err
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
		if sink.Trajectory, err = columnar.CreateTrajectoryFile(trajectoryPath, outCfg); err != nil {
			abort()
			return err
		}
	}
	rejectsPath := rejectsName(o.Output)
	// Like the columnar outputs, the rejects are written under a temporary
	// name and renamed into place only when the run succeeds: a failed run
	// leaves the previous run's rejects next to its mastery file.
	rejectsFile, err := createTemp(rejectsPath)
	if err != nil {
		abort()
		return err
	}
	defer rejectsFile.discard()
	abort = func() {
		mastery.Abort()
		if sink.Trajectory != nil {
			sink.Trajectory.Abort()
		}
		rejectsFile.discard()
	}

	cfg := worker.Config{Batching: o.Batching.Config(m.NumSkills), Engines: o.Sessions, MaxSteps: o.MaxSteps, Trajectory: o.Trajectory}
	var progress worker.Progress
	bar := startProgress(stderr, !o.Quiet, input, &progress)
	sum, runErr := worker.Run(ctx, cfg, worker.RecordSource{Reader: input}, engine.Of(model.FixedVersion(m)), sink,
		worker.RejectLogSink{Log: records.NewRejectLog(rejectsFile.f)}, &progress)
	bar.stop()
	if runErr != nil {
		abort()
		if errors.Is(runErr, context.Canceled) {
			return fmt.Errorf("interrupted after %d students; %s was not written", sum.Students, o.Output)
		}
		return runErr
	}
	closeErr := mastery.Close()
	if sink.Trajectory != nil {
		closeErr = errors.Join(closeErr, sink.Trajectory.Close())
	}
	if closeErr != nil {
		rejectsFile.discard() // a failed Close already removed its own file
		return closeErr
	}
	if err := rejectsFile.commit(); err != nil {
		return err
	}
	printSummary(stdout, sum, o, outFormat, trajectoryPath, rejectsPath)
	fmt.Fprintf(stdout, "model=%s/%s signature=%s\n", m.Name, m.Version, m.Signature)
	if sum.Students == 0 && sum.Rejected > 0 {
		return allRejected(sum.Rejected, o, rejectsPath)
	}
	if o.EmitState != "" {
		return emitStates(ctx, m, o, stdout)
	}
	return nil
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

// tempFile is an output written under a temporary name in its destination's
// directory until commit renames it into place.
type tempFile struct {
	f    *os.File
	path string
	done bool
}

func createTemp(path string) (*tempFile, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*.partial")
	if err != nil {
		return nil, fmt.Errorf("create %s: %w (check the directory exists and is writable)", path, err)
	}
	// CreateTemp makes the file private; results are meant to be shared.
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return &tempFile{f: f, path: path}, nil
}

// commit syncs the file and renames it to its path.
func (t *tempFile) commit() error {
	t.done = true
	tmp := t.f.Name()
	err := t.f.Sync()
	err = errors.Join(err, t.f.Close())
	if err == nil {
		err = os.Rename(tmp, t.path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", t.path, err)
	}
	return nil
}

// discard removes the temporary file, unless it was committed.
func (t *tempFile) discard() {
	if t.done {
		return
	}
	t.done = true
	t.f.Close()
	os.Remove(t.f.Name())
}
