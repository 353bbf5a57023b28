package model

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// copyVersion copies the bundled model into base/version the way operators
// are told to: into a temporary name first, then renamed into place.
func copyVersion(t *testing.T, base, version string) {
	t.Helper()
	src := filepath.Join(bundledModel, "1")
	tmp := filepath.Join(base, ".incoming-"+version)
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(tmp, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(tmp, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(base, version)); err != nil {
		t.Fatal(err)
	}
}

type eventLog struct {
	mu     sync.Mutex
	events []VersionEvent
}

func (l *eventLog) add(e VersionEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) all() []VersionEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]VersionEvent(nil), l.events...)
}

func oneStudent(numSkills int) (Inputs, Outputs) {
	in := Inputs{Size: 1, Steps: 2, SkillID: []int32{3, 7}, Correct: []int32{1, 0}, TargetID: []int32{7, 0}, SeqLen: []int32{2}}
	return in, Outputs{Last: make([]float32, numSkills)}
}

func TestVersionsSwapToNewVersionAndRefuseCorruptOne(t *testing.T) {
	base := filepath.Join(t.TempDir(), "dkt")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	copyVersion(t, base, "1")
	var log eventLog
	v, err := OpenVersions(VersionsConfig{Base: base, Load: Config{Sessions: 1}, Report: log.add})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ctx := context.Background()
	if got := v.Current().Version; got != "1" {
		t.Fatalf("serving version %s, want 1", got)
	}
	if v.Poll(ctx) {
		t.Fatal("Poll swapped with no new version")
	}

	// A batch holds version 1 across the swap: it must stay usable until released.
	held, release := v.Acquire()
	copyVersion(t, base, "2")
	if !v.Poll(ctx) {
		t.Fatalf("Poll did not swap to version 2; events: %+v", log.all())
	}
	if got := v.Current().Version; got != "2" {
		t.Fatalf("after the swap serving %s, want 2", got)
	}
	in, out := oneStudent(held.NumSkills)
	if err := held.Predict(ctx, in, out); err != nil {
		t.Fatalf("in-flight batch on the old version failed after the swap: %v", err)
	}
	old := append([]float32(nil), out.Last...)
	release()
	v.retiring.Wait()
	if held.all != nil {
		t.Fatal("version 1 was not freed once its last batch released it")
	}

	m, release := v.Acquire()
	if err := m.Predict(ctx, in, out); err != nil {
		t.Fatal(err)
	}
	release()
	for k := range old {
		if old[k] != out.Last[k] {
			t.Fatalf("same weights under version 2 scored differently at skill %d: %v vs %v", k, old[k], out.Last[k])
		}
	}

	// A corrupt version 3 is refused, once, and version 2 keeps serving.
	if err := os.MkdirAll(filepath.Join(base, "3", "variables"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "3", "saved_model.pb"), []byte("not a protobuf"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v.Poll(ctx) || v.Poll(ctx) {
		t.Fatal("swapped to a corrupt version")
	}
	if got := v.Current().Version; got != "2" {
		t.Fatalf("after a corrupt version serving %s, want 2", got)
	}
	events := log.all()
	var failed []VersionEvent
	for _, e := range events {
		if e.Err != nil {
			failed = append(failed, e)
		}
	}
	if len(failed) != 1 || failed[0].Version != "dkt/3" {
		t.Fatalf("want exactly one refusal, of dkt/3 (not retried while unchanged); events: %+v", events)
	}
	if m, release := v.Acquire(); m.Predict(ctx, in, out) != nil {
		t.Fatal("version 2 stopped scoring after the refusal")
	} else {
		release()
	}
	if loaded := len(events) - len(failed); loaded != 2 {
		t.Fatalf("want 2 loads reported (versions 1 and 2), got %d: %+v", loaded, events)
	}

	// Version 3 is then written in place as a plain `cp -r` would, the
	// data shard last: caught half-copied it is refused, and once the shard
	// is complete it is retried and swapped in.
	src := filepath.Join(bundledModel, "1")
	write := func(rel string, keep func([]byte) []byte) {
		data, err := os.ReadFile(filepath.Join(src, rel))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(base, "3", rel), keep(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	whole := func(b []byte) []byte { return b }
	const shard = "variables/variables.data-00000-of-00001"
	write("saved_model.pb", whole)
	write("variables/variables.index", whole)
	write(shard, func(b []byte) []byte { return b[:len(b)/2] })
	if v.Poll(ctx) {
		t.Fatal("swapped to a version whose variables are half written")
	}
	write(shard, whole)
	if !v.Poll(ctx) || v.Current().Version != "3" {
		t.Fatalf("completed version 3 not retried; serving %s; events %+v", v.Current().Version, log.all())
	}
}

// Batches keep running on whichever version is current while versions are
// swapped underneath them (run with -race).
func TestVersionsSwapUnderConcurrentBatches(t *testing.T) {
	base := filepath.Join(t.TempDir(), "dkt")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	copyVersion(t, base, "1")
	v, err := OpenVersions(VersionsConfig{Base: base, Load: Config{Sessions: 2}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			in, out := oneStudent(v.Current().NumSkills)
			for {
				select {
				case <-stop:
					return
				default:
				}
				m, release := v.Acquire()
				err := m.Predict(ctx, in, out)
				release()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for version := 2; version <= 4; version++ {
		copyVersion(t, base, strconv.Itoa(version))
		if !v.Poll(ctx) {
			t.Errorf("no swap to version %d", version)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a batch failed during the swaps: %v", err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if v.Poll(ctx) {
		t.Fatal("Poll swapped after Close")
	}
}

func TestVersionsPin(t *testing.T) {
	base := filepath.Join(t.TempDir(), "dkt")
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	copyVersion(t, base, "1")
	copyVersion(t, base, "2")
	v, err := OpenVersions(VersionsConfig{Base: base, Pin: "1", Load: Config{Sessions: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if v.Poll(context.Background()) || v.Current().Version != "1" {
		t.Fatalf("pinned to 1 but serving %s", v.Current().Version)
	}
	for _, pin := range []string{"7", "latest"} {
		if _, err := OpenVersions(VersionsConfig{Base: base, Pin: pin, Load: Config{Sessions: 1}}); err == nil {
			t.Errorf("pin %q: want an error", pin)
		}
	}
}

func TestCompatibleRefusesOtherNumSkills(t *testing.T) {
	running := &Model{Name: "dkt", Version: "1", NumSkills: 124}
	if err := compatible(running, &Model{Dir: "dkt/2", NumSkills: 124}); err != nil {
		t.Fatalf("same num_skills refused: %v", err)
	}
	if err := compatible(running, &Model{Dir: "dkt/2", NumSkills: 110}); err == nil {
		t.Fatal("num_skills 110 after 124 accepted")
	}
}
