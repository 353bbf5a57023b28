package supervise

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The fake child is this test binary re-executed with FAKE_CHILD set. It
// records its environment, serves /healthz and /readyz on DKTSCORE_HTTP_ADDR
// like `dktscore serve`, and on SIGTERM writes "sigterm" and exits 0.
// FAKE_CHILD=ignore-term ignores SIGTERM (to prove the SIGKILL escalation);
// FAKE_CHILD=exit2 exits 2 at once (an invalid configuration).
func TestMain(m *testing.M) {
	if mode := os.Getenv("FAKE_CHILD"); mode != "" {
		os.Exit(fakeChild(mode))
	}
	os.Exit(m.Run())
}

func fakeChild(mode string) int {
	dir := os.Getenv("FAKE_DIR")
	name := os.Getenv("FAKE_NAME")
	write := func(suffix, body string) {
		_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s.%d.%s", name, os.Getpid(), suffix)), []byte(body), 0o644)
	}
	if mode == "exit2" {
		return 2
	}
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM)
	if mode == "ignore-term" {
		signal.Ignore(syscall.SIGTERM)
	}
	ln, err := net.Listen("tcp", os.Getenv("DKTSCORE_HTTP_ADDR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake child:", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if mode == "not-ready" {
			http.Error(w, "model not loaded", http.StatusServiceUnavailable)
		}
	})
	go http.Serve(ln, mux)
	write("env", strings.Join([]string{
		"DKTSCORE_GPUS=" + os.Getenv("DKTSCORE_GPUS"),
		"DKTSCORE_GPU_MEMORY_FRACTION=" + os.Getenv("DKTSCORE_GPU_MEMORY_FRACTION"),
		"CUDA_VISIBLE_DEVICES=" + os.Getenv("CUDA_VISIBLE_DEVICES"),
	}, "\n"))
	select {
	case <-terms:
		write("sigterm", "")
		return 0
	case <-time.After(60 * time.Second): // never outlive a broken test
		return 3
	}
}

type fakeSpec struct {
	name, mode, gpus, fraction, cuda string
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func children(t *testing.T, dir string, specs ...fakeSpec) []Child {
	t.Helper()
	var out []Child
	for _, s := range specs {
		addr := freeAddr(t)
		out = append(out, Child{
			Name: s.name,
			Path: os.Args[0],
			Args: []string{"-test.run=^$"},
			Env: append(os.Environ(),
				"FAKE_CHILD="+s.mode, "FAKE_DIR="+dir, "FAKE_NAME="+s.name,
				"DKTSCORE_HTTP_ADDR="+addr, "DKTSCORE_GPUS="+s.gpus,
				"DKTSCORE_GPU_MEMORY_FRACTION="+s.fraction, "CUDA_VISIBLE_DEVICES="+s.cuda),
			HealthURL: "http://" + addr + "/healthz",
			ReadyURL:  "http://" + addr + "/readyz",
			Labels:    map[string]string{"gpus": s.gpus},
		})
	}
	return out
}

func testConfig(t *testing.T, kids []Child) Config {
	return Config{
		Children:      kids,
		MinBackoff:    20 * time.Millisecond,
		MaxBackoff:    100 * time.Millisecond,
		StopTimeout:   5 * time.Second,
		ProbeInterval: 20 * time.Millisecond,
		ProbeTimeout:  time.Second,
		Stdout:        io.Discard,
		Stderr:        io.Discard,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

// start runs the supervisor in the background; the returned func (callable
// more than once) waits for Run to return, failing the test after a deadline.
func start(t *testing.T, ctx context.Context, s *Supervisor) func() error {
	t.Helper()
	done := make(chan struct{})
	var err error
	go func() { err = s.Run(ctx); close(done) }()
	return func() error {
		select {
		case <-done:
			return err
		case <-time.After(20 * time.Second):
			t.Fatal("Run did not return within 20s")
			return nil
		}
	}
}

// eventually polls cond until it holds or 15s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func allReady(s *Supervisor) bool {
	for _, c := range s.Status() {
		if !c.Ready {
			return false
		}
	}
	return true
}

func files(t *testing.T, dir, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Children get their own device and fraction; SIGTERM to the parent reaches
// every child, each exits cleanly, and Run returns nil.
func TestSIGTERMReachesEveryChild(t *testing.T) {
	dir := t.TempDir()
	kids := children(t, dir,
		fakeSpec{"gpu0", "serve", "0", "0.45", "GPU-aaaa"},
		fakeSpec{"gpu2", "serve", "2", "0.9", "GPU-cccc"},
	)
	s, err := New(testConfig(t, kids))
	if err != nil {
		t.Fatal(err)
	}
	// As cmd does: the parent's signals end Run's context.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	wait := start(t, ctx, s)
	eventually(t, "both children healthy and ready", func() bool { return allReady(s) })

	for _, want := range []struct{ name, env string }{
		{"gpu0", "DKTSCORE_GPUS=0\nDKTSCORE_GPU_MEMORY_FRACTION=0.45\nCUDA_VISIBLE_DEVICES=GPU-aaaa"},
		{"gpu2", "DKTSCORE_GPUS=2\nDKTSCORE_GPU_MEMORY_FRACTION=0.9\nCUDA_VISIBLE_DEVICES=GPU-cccc"},
	} {
		got := files(t, dir, want.name+".*.env")
		if len(got) != 1 {
			t.Fatalf("%s: %d env records, want 1", want.name, len(got))
		}
		b, _ := os.ReadFile(got[0])
		if string(b) != want.env {
			t.Errorf("%s saw env\n%s\nwant\n%s", want.name, b, want.env)
		}
	}
	pids := map[string]int{}
	for _, c := range s.Status() {
		pids[c.Name] = c.PID
	}

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := wait(); err != nil {
		t.Fatalf("Run after SIGTERM: %v", err)
	}
	for name, pid := range pids {
		if got := files(t, dir, fmt.Sprintf("%s.%d.sigterm", name, pid)); len(got) != 1 {
			t.Errorf("%s (pid %d) did not receive SIGTERM", name, pid)
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("%s (pid %d) still exists after Run returned: %v", name, pid, err)
		}
	}
	for _, c := range s.Status() {
		if c.Running || c.Healthy || c.LastExit != "exit status 0" || c.Restarts != 0 {
			t.Errorf("after shutdown: %+v", c)
		}
	}
}

// A child killed from outside is restarted with a new pid; its sibling is untouched.
func TestKilledChildIsRestarted(t *testing.T) {
	dir := t.TempDir()
	s, err := New(testConfig(t, children(t, dir,
		fakeSpec{"gpu0", "serve", "0", "0.5", "0"},
		fakeSpec{"gpu1", "serve", "1", "0.5", "1"},
	)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait := start(t, ctx, s)
	defer func() { cancel(); wait() }()
	eventually(t, "children ready", func() bool { return allReady(s) })
	before := s.Status()

	if err := syscall.Kill(before[0].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "gpu0 restarted and ready", func() bool {
		c := s.Status()[0]
		return c.Restarts == 1 && c.Ready && c.PID != before[0].PID
	})
	now := s.Status()
	if now[0].LastExit != "signal: killed" {
		t.Errorf("last exit %q, want signal: killed", now[0].LastExit)
	}
	if now[1].PID != before[1].PID || now[1].Restarts != 0 {
		t.Errorf("sibling disturbed: before %+v, now %+v", before[1], now[1])
	}
	if n := len(files(t, dir, "gpu0.*.env")); n != 2 {
		t.Errorf("gpu0 started %d times, want 2", n)
	}

	cancel()
	if err := wait(); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
}

// A child that ignores SIGTERM is killed after StopTimeout, and Run still returns.
func TestStubbornChildIsKilledAfterStopTimeout(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, children(t, dir, fakeSpec{"cpu", "ignore-term", "none", "0", "-1"}))
	cfg.StopTimeout = 300 * time.Millisecond
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wait := start(t, ctx, s)
	eventually(t, "child ready", func() bool { return allReady(s) })
	begin := time.Now()
	cancel()
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took < cfg.StopTimeout {
		t.Errorf("Run returned after %v, before StopTimeout %v", took, cfg.StopTimeout)
	}
	if c := s.Status()[0]; c.LastExit != "signal: killed" {
		t.Errorf("last exit %q, want signal: killed", c.LastExit)
	}
}

// A fatal exit status (an invalid configuration) stops everything instead of
// restarting forever, and Run says which child and why.
func TestFatalExitStopsEveryChild(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, children(t, dir,
		fakeSpec{"gpu0", "serve", "0", "0.5", "0"},
		fakeSpec{"gpu1", "exit2", "1", "0.5", "1"},
	))
	cfg.FatalExitCodes = []int{2}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = start(t, context.Background(), s)()
	if !errors.Is(err, ErrFatalExit) || !strings.Contains(err.Error(), "gpu1") || !strings.Contains(err.Error(), "exit status 2") {
		t.Fatalf("Run = %v, want ErrFatalExit naming gpu1", err)
	}
	for _, c := range s.Status() {
		if c.Running {
			t.Errorf("%s still running", c.Name)
		}
	}
}

// Without FatalExitCodes, a crash loop is retried with growing, bounded
// backoff; a start that cannot even exec is reported and retried too.
func TestCrashLoopBacksOff(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, children(t, dir, fakeSpec{"gpu0", "exit2", "0", "0.5", "0"}))
	cfg.Children = append(cfg.Children, Child{Name: "missing", Path: filepath.Join(dir, "no-such-binary")})
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	if err := start(t, ctx, s)(); err != nil {
		t.Fatal(err)
	}
	st := s.Status()
	// Backoffs 20, 40, 80, 100, 100, … ms: about 8 starts fit in 700ms, not the
	// hundreds a loop without backoff would make.
	if st[0].Starts < 3 || st[0].Starts > 12 {
		t.Errorf("crash loop started %d times in 700ms, want about 8", st[0].Starts)
	}
	// The deadline may fall while a run is starting: then it was stopped.
	if st[0].LastExit != "exit status 2" && st[0].LastExit != "signal: terminated" {
		t.Errorf("last exit %q", st[0].LastExit)
	}
	if st[1].Starts != 0 || !strings.HasPrefix(st[1].LastExit, "start: ") {
		t.Errorf("missing binary: %+v", st[1])
	}
}

func TestHandlersReportEveryChild(t *testing.T) {
	dir := t.TempDir()
	s, err := New(testConfig(t, children(t, dir,
		fakeSpec{"gpu0", "serve", "0", "0.5", "0"},
		fakeSpec{"gpu1", "not-ready", "1", "0.5", "1"},
	)))
	if err != nil {
		t.Fatal(err)
	}
	get := func(h http.Handler) (int, Report) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		var rep Report
		if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
			t.Fatalf("body %q: %v", rec.Body, err)
		}
		return rec.Code, rep
	}
	if code, rep := get(s.HealthHandler()); code != http.StatusServiceUnavailable || rep.Status != "unavailable" {
		t.Errorf("before Run: %d %+v, want 503", code, rep)
	}

	ctx, cancel := context.WithCancel(context.Background())
	wait := start(t, ctx, s)
	defer func() { cancel(); wait() }()
	eventually(t, "both healthy", func() bool {
		code, _ := get(s.HealthHandler())
		return code == http.StatusOK
	})
	code, rep := get(s.ReadyHandler())
	if code != http.StatusServiceUnavailable || rep.Status != "unavailable" || len(rep.Children) != 2 {
		t.Fatalf("readyz with gpu1 not ready: %d %+v", code, rep)
	}
	if rep.Children[0].Ready != true || rep.Children[1].Ready || !strings.Contains(rep.Children[1].ProbeError, "503") {
		t.Errorf("children %+v", rep.Children)
	}
	if rep.Children[1].Labels["gpus"] != "1" || rep.Children[1].PID == 0 {
		t.Errorf("gpu1 status %+v", rep.Children[1])
	}
}

func TestNewRejectsEveryProblem(t *testing.T) {
	_, err := New(Config{
		Children:   []Child{{Name: "a", Path: "/bin/true"}, {Name: "a"}, {Path: "/bin/true"}},
		MinBackoff: time.Minute, MaxBackoff: time.Second, StopTimeout: -1,
	})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{`"a" used twice`, `"a" has no command path`, "child 2 has no name", "exceeds MaxBackoff", "StopTimeout -1ns is negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "no child") {
		t.Errorf("empty config: %v", err)
	}
}
