package model

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// VersionsConfig says which model base directory to serve and how.
type VersionsConfig struct {
	// Base is a directory in TF Serving's NAME/VERSION layout; the highest
	// numeric version that holds a saved_model.pb is served.
	Base string
	// Pin, when set, serves only this version (a rollback or a canary); new
	// versions are then ignored.
	Pin string
	// Load is how each version is loaded; its Path is set per version.
	Load Config
	// Report, when set, hears about every load, swap and failure (logs, metrics).
	Report func(VersionEvent)
}

// VersionEvent is one outcome of a poll.
type VersionEvent struct {
	Version string // "name/version"
	Loaded  bool   // true: now serving it; false: Err says why it was refused
	Took    time.Duration
	Err     error
}

// Versions serves the current version of a model and swaps in new ones
// between batches. Callers Acquire the model for one batch and release it
// after; a swap waits for every batch holding the old version, then closes it.
type Versions struct {
	cfg VersionsConfig

	mu      sync.RWMutex // guards current; Acquire holds it shared while taking a reference
	current *served

	pollMu sync.Mutex                // one poll at a time; Close takes it too
	failed map[string]directoryStamp // versions refused, until their files change
	closed bool                      // set by Close under pollMu: no poll swaps after it

	retiring sync.WaitGroup // old versions waiting for their batches, then closing
}

// served is one loaded version with the batches in flight on it.
type served struct {
	model    *Model
	inFlight sync.WaitGroup
}

// directoryStamp identifies the contents of a version directory cheaply, so a
// refused version is retried only once its files have changed (e.g. a copy
// that was still in progress has finished: any file of it, the variables'
// data shards included, may be the last to be written).
type directoryStamp struct {
	files  int
	bytes  int64
	newest time.Time
}

// OpenVersions loads the version to serve now. It fails when that version
// cannot be loaded: there is nothing to fall back to at startup.
func OpenVersions(cfg VersionsConfig) (*Versions, error) {
	v := &Versions{cfg: cfg, failed: map[string]directoryStamp{}}
	dir, err := v.target()
	if err != nil {
		return nil, err
	}
	m, err := v.load(context.Background(), dir)
	if err != nil {
		return nil, err
	}
	v.current = &served{model: m}
	v.report(VersionEvent{Version: m.Name + "/" + m.Version, Loaded: true})
	return v, nil
}

// FixedVersion serves one loaded model and never swaps it (score: one run,
// one model).
func FixedVersion(m *Model) *Versions {
	return &Versions{current: &served{model: m}, failed: map[string]directoryStamp{}}
}

// Acquire returns the model to run the next batch on; call release once the
// batch's outputs are copied out. A swap never closes a model between the
// two.
func (v *Versions) Acquire() (m *Model, release func()) {
	v.mu.RLock()
	s := v.current
	// Add happens under the shared lock and the swap replaces current under
	// the exclusive one, so once a swap has released the lock no new batch
	// can join the old version and its Wait sees every batch that did.
	s.inFlight.Add(1)
	v.mu.RUnlock()
	return s.model, s.inFlight.Done
}

// Current is the model serving now, for its name, version and num_skills.
func (v *Versions) Current() *Model {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.current.model
}

// Watch polls for a new version every interval until ctx ends.
func (v *Versions) Watch(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
			v.Poll(ctx)
		}
	}
}

// Poll loads the version that should be served if it is not the one being
// served: loaded and warmed off the hot path, checked against the running
// one, then swapped in. A version that fails is reported and the running
// one keeps serving. It returns whether a swap happened.
func (v *Versions) Poll(ctx context.Context) bool {
	if v.cfg.Base == "" {
		return false
	}
	v.pollMu.Lock()
	defer v.pollMu.Unlock()
	if v.closed {
		return false
	}
	dir, err := v.target()
	running := v.Current()
	if err != nil || filepath.Clean(dir) == filepath.Clean(running.Dir) {
		// A base directory that vanished leaves the running version serving.
		return false
	}
	stamp := stampOf(dir)
	if old, refused := v.failed[dir]; refused && old == stamp {
		return false
	}
	started := time.Now()
	next, err := v.load(ctx, dir)
	if err == nil {
		err = compatible(running, next)
		if err != nil {
			next.Close()
		}
	}
	name := filepath.Base(v.cfg.Base) + "/" + filepath.Base(dir)
	if err != nil && ctx.Err() != nil {
		// Stopping interrupted the load: nothing is wrong with the version.
		return false
	}
	if err != nil {
		v.failed[dir] = stamp
		v.report(VersionEvent{Version: name, Took: time.Since(started), Err: err})
		return false
	}
	delete(v.failed, dir)
	v.mu.Lock()
	old := v.current
	v.current = &served{model: next}
	v.mu.Unlock()
	v.report(VersionEvent{Version: next.Name + "/" + next.Version, Loaded: true, Took: time.Since(started)})
	// In-flight batches finish on the old version; only then is it freed.
	v.retiring.Go(func() {
		old.inFlight.Wait()
		old.model.Close()
	})
	return true
}

// Close waits for a poll in progress (no swap happens after Close), for the
// batches in flight on every version, and frees them all. Callers stop
// calling Acquire first.
func (v *Versions) Close() error {
	v.pollMu.Lock()
	v.closed = true
	v.pollMu.Unlock()
	v.retiring.Wait()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.current.inFlight.Wait()
	return v.current.model.Close()
}

// target is the version directory that should be served now.
func (v *Versions) target() (string, error) {
	if v.cfg.Pin == "" {
		dir, _, _, err := ResolveDir(v.cfg.Base)
		return dir, err
	}
	if _, err := strconv.Atoi(v.cfg.Pin); err != nil {
		return "", fmt.Errorf("model version pin %q is not a number; name a version directory under %s", v.cfg.Pin, v.cfg.Base)
	}
	dir := filepath.Join(v.cfg.Base, v.cfg.Pin)
	if _, err := os.Stat(filepath.Join(dir, "saved_model.pb")); err != nil {
		return "", fmt.Errorf("%s: %w: pinned version %s has no saved_model.pb", dir, ErrNotSavedModel, v.cfg.Pin)
	}
	return dir, nil
}

// load loads a version directory and warms it with one small batch, so the
// first real batch on it pays no graph-initialisation cost.
func (v *Versions) load(ctx context.Context, dir string) (*Model, error) {
	cfg := v.cfg.Load
	cfg.Path = dir
	m, err := Load(cfg)
	if err != nil {
		return nil, err
	}
	if err := m.warm(ctx); err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: warm-up batch failed: %w", dir, err)
	}
	return m, nil
}

// compatible refuses a version the running pipeline cannot feed: input
// validation and output widths are sized by num_skills.
func compatible(running, next *Model) error {
	if next.NumSkills != running.NumSkills {
		return fmt.Errorf("%s: num_skills %d differs from the running version %s's %d; "+
			"inputs are validated and outputs sized by num_skills, so restart the worker to change it",
			next.Dir, next.NumSkills, running.Version, running.NumSkills)
	}
	return nil
}

func (v *Versions) report(e VersionEvent) {
	if v.cfg.Report != nil {
		v.cfg.Report(e)
	}
}

func stampOf(dir string) directoryStamp {
	var s directoryStamp
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil // a vanished entry only changes the stamp
		}
		if fi, err := d.Info(); err == nil {
			s.files++
			s.bytes += fi.Size()
			if fi.ModTime().After(s.newest) {
				s.newest = fi.ModTime()
			}
		}
		return nil
	})
	return s
}

// warm scores one student with one interaction: TensorFlow builds its kernels
// and allocators on a session's first run, which would otherwise land on the
// first live batch after a swap.
func (m *Model) warm(ctx context.Context) error {
	in := Inputs{Size: 1, Steps: 1, SkillID: []int32{0}, Correct: []int32{1}, TargetID: []int32{0}, SeqLen: []int32{1}}
	out := Outputs{Last: make([]float32, m.NumSkills)}
	for range m.all {
		if err := m.Predict(ctx, in, out); err != nil {
			return err
		}
	}
	return nil
}
