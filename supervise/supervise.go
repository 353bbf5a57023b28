// Package supervise runs worker processes — one per GPU placement — restarts
// the ones that crash, stops them all on shutdown, and reports their health.
//
// TensorFlow's GPU options are process-wide, so a host with several GPUs runs
// one `dktscore serve` child per GPU, all in one Kafka consumer group; the
// parent runs this supervisor and serves the children's aggregate health.
// The package knows nothing of Kafka, TensorFlow or GPUs: the caller gives it a
// command and an environment per child.
package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"
)

// ErrFatalExit is wrapped by Run's error when a child exits with one of
// Config.FatalExitCodes (say, 2 for an invalid configuration): restarting it
// would fail the same way forever, so every child is stopped instead.
var ErrFatalExit = errors.New("child exited with a fatal status")

// Child is one worker process to keep running.
type Child struct {
	// Name labels the child in logs and reports ("gpu2", "cpu"); unique.
	Name string
	// Path and Args are the command (Args excludes the program name), e.g.
	// os.Executable() and ["serve"].
	Path string
	Args []string
	// Env is the child's complete environment, as exec.Cmd.Env: typically
	// append(os.Environ(), placement.ChildEnv()..., "DKTSCORE_HTTP_ADDR=127.0.0.1:PORT").
	// nil inherits the parent's.
	Env []string
	// HealthURL and ReadyURL are polled while the child runs (e.g.
	// http://127.0.0.1:PORT/healthz and /readyz); 200 means yes. Empty
	// HealthURL: healthy while running. Empty ReadyURL: ready when healthy.
	HealthURL string
	ReadyURL  string
	// MetricsURL is the child's Prometheus endpoint, merged into
	// MetricsHandler's; empty leaves the child out.
	MetricsURL string
	// Labels are echoed in the child's status (device, memory fraction, …).
	Labels map[string]string
}

// Config is the supervisor's configuration; zero durations take the defaults.
type Config struct {
	Children []Child
	// MinBackoff is the wait before the first restart (default 1s); each crash
	// in a row doubles it up to MaxBackoff (default 1m).
	MinBackoff, MaxBackoff time.Duration
	// HealthyAfter: a child that ran at least this long before crashing is
	// restarted after MinBackoff again (default 1m).
	HealthyAfter time.Duration
	// StopSignal is sent to every child when Run's context ends (default
	// SIGTERM: a worker drains, commits and exits on it).
	StopSignal os.Signal
	// StopTimeout is how long children get to exit after StopSignal before they
	// are killed (default 35s: above the worker's 30s DKTSCORE_SHUTDOWN_TIMEOUT).
	StopTimeout time.Duration
	// ProbeInterval and ProbeTimeout pace the health polls (default 5s and 2s).
	ProbeInterval, ProbeTimeout time.Duration
	// FatalExitCodes end Run with ErrFatalExit instead of a restart.
	FatalExitCodes []int
	// Stdout and Stderr receive the children's output (default the parent's).
	Stdout, Stderr io.Writer
	// Logger gets starts, exits and restarts (default slog.Default()).
	Logger *slog.Logger
}

func (c *Config) validate() error {
	var errs []error
	if len(c.Children) == 0 {
		errs = append(errs, errors.New("supervise: no child to run"))
	}
	names := map[string]bool{}
	for i, ch := range c.Children {
		switch {
		case ch.Name == "":
			errs = append(errs, fmt.Errorf("supervise: child %d has no name", i))
		case names[ch.Name]:
			errs = append(errs, fmt.Errorf("supervise: child name %q used twice", ch.Name))
		}
		names[ch.Name] = true
		if ch.Path == "" {
			errs = append(errs, fmt.Errorf("supervise: child %q has no command path", ch.Name))
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"MinBackoff", c.MinBackoff}, {"MaxBackoff", c.MaxBackoff}, {"HealthyAfter", c.HealthyAfter},
		{"StopTimeout", c.StopTimeout}, {"ProbeInterval", c.ProbeInterval}, {"ProbeTimeout", c.ProbeTimeout}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("supervise: %s %v is negative", d.name, d.v))
		}
	}
	if c.MaxBackoff > 0 && c.MinBackoff > c.MaxBackoff {
		errs = append(errs, fmt.Errorf("supervise: MinBackoff %v exceeds MaxBackoff %v", c.MinBackoff, c.MaxBackoff))
	}
	return errors.Join(errs...)
}

func (c *Config) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.MinBackoff, time.Second)
	def(&c.MaxBackoff, time.Minute)
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	def(&c.HealthyAfter, time.Minute)
	def(&c.StopTimeout, 35*time.Second)
	def(&c.ProbeInterval, 5*time.Second)
	def(&c.ProbeTimeout, 2*time.Second)
	if c.StopSignal == nil {
		c.StopSignal = syscall.SIGTERM
	}
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// ChildStatus is a snapshot of one child, for the parent's /healthz and /readyz.
type ChildStatus struct {
	Name    string            `json:"name"`
	Labels  map[string]string `json:"labels,omitempty"`
	Running bool              `json:"running"`
	// PID is the running process's id, 0 between runs.
	PID int `json:"pid,omitempty"`
	// Starts counts successful starts; Restarts = starts after the first.
	Starts    int       `json:"starts"`
	Restarts  int       `json:"restarts"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// LastExit is how the previous run ended ("exit status 1", "signal: killed",
	// or a start error), LastExitAt when.
	LastExit   string    `json:"last_exit,omitempty"`
	LastExitAt time.Time `json:"last_exit_at,omitzero"`
	// NextStartAt is set while a crashed child waits out its backoff.
	NextStartAt time.Time `json:"next_start_at,omitzero"`
	Healthy     bool      `json:"healthy"`
	Ready       bool      `json:"ready"`
	// ProbeError says why the last health or readiness poll failed.
	ProbeError string `json:"probe_error,omitempty"`
}

// Supervisor runs the children of one Config.
type Supervisor struct {
	cfg    Config
	client *http.Client

	mu     sync.Mutex
	status []ChildStatus
}

// New checks cfg and returns a supervisor ready to Run.
func New(cfg Config) (*Supervisor, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	s := &Supervisor{
		cfg:    cfg,
		client: &http.Client{Timeout: cfg.ProbeTimeout},
		status: make([]ChildStatus, len(cfg.Children)),
	}
	for i, ch := range cfg.Children {
		s.status[i] = ChildStatus{Name: ch.Name, Labels: ch.Labels}
	}
	return s, nil
}

// Status returns a snapshot of every child, in Config order.
func (s *Supervisor) Status() []ChildStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.status)
	return out
}

func (s *Supervisor) update(i int, f func(*ChildStatus)) {
	s.mu.Lock()
	f(&s.status[i])
	s.mu.Unlock()
}

// Run starts every child and keeps it running until ctx ends; then it sends
// StopSignal to each, kills those still running after StopTimeout, and returns
// once all have exited. It returns nil after a shutdown by ctx, or an error
// wrapping ErrFatalExit when a child exited with a fatal status (the others
// are stopped the same way first).
func (s *Supervisor) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for i := range s.cfg.Children {
		wg.Go(func() { s.keep(ctx, cancel, i) })
	}
	wg.Wait()
	if err := context.Cause(ctx); errors.Is(err, ErrFatalExit) {
		return err
	}
	return nil
}

// keep runs child i again and again until ctx ends. The event order per run:
// start → (probe loop) → either the child exits first (record, maybe fatal,
// back off, loop) or ctx ends first (signal, wait up to StopTimeout, kill,
// wait, return). The probe loop is stopped and waited for before the next run,
// so at most one probe goroutine per child exists at any time.
func (s *Supervisor) keep(ctx context.Context, fatal context.CancelCauseFunc, i int) {
	spec := s.cfg.Children[i]
	log := s.cfg.Logger.With("child", spec.Name)
	backoff := s.cfg.MinBackoff
	for ctx.Err() == nil {
		cmd := exec.Command(spec.Path, spec.Args...)
		cmd.Env = spec.Env
		cmd.Stdout, cmd.Stderr = s.cfg.Stdout, s.cfg.Stderr
		cmd.SysProcAttr = sysProcAttr()
		started := time.Now()
		if err := cmd.Start(); err != nil {
			log.Error("dktscore supervise: start failed", "err", err, "retry_in", backoff)
			s.update(i, func(st *ChildStatus) {
				st.LastExit, st.LastExitAt, st.NextStartAt = "start: "+err.Error(), time.Now(), time.Now().Add(backoff)
			})
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, s.cfg.MaxBackoff)
			continue
		}
		pid := cmd.Process.Pid
		log.Info("dktscore supervise: started", "pid", pid)
		s.update(i, func(st *ChildStatus) {
			if st.Starts > 0 {
				st.Restarts++
			}
			st.Starts++
			st.Running, st.PID, st.StartedAt, st.NextStartAt = true, pid, started, time.Time{}
			st.Healthy, st.Ready, st.ProbeError = false, false, ""
		})

		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		probeCtx, stopProbe := context.WithCancel(ctx)
		probeDone := make(chan struct{})
		go func() { defer close(probeDone); s.probe(probeCtx, i, spec) }()

		var waitErr error
		select {
		case waitErr = <-exited:
		case <-ctx.Done():
			waitErr = s.stop(cmd, exited, log)
		}
		stopProbe()
		<-probeDone
		ran := time.Since(started)
		desc := exitDescription(waitErr)
		s.update(i, func(st *ChildStatus) {
			st.Running, st.PID, st.Healthy, st.Ready = false, 0, false, false
			st.LastExit, st.LastExitAt = desc, time.Now()
		})
		if ctx.Err() != nil {
			log.Info("dktscore supervise: stopped", "pid", pid, "exit", desc)
			return
		}
		if code := exitCode(waitErr); slices.Contains(s.cfg.FatalExitCodes, code) {
			log.Error("dktscore supervise: fatal exit, stopping every child", "pid", pid, "exit", desc)
			fatal(fmt.Errorf("%w: %s (pid %d) %s after %v; see its log above", ErrFatalExit, spec.Name, pid, desc, ran.Round(time.Millisecond)))
			return
		}
		if ran >= s.cfg.HealthyAfter {
			backoff = s.cfg.MinBackoff
		}
		log.Warn("dktscore supervise: child exited, restarting", "pid", pid, "exit", desc, "ran", ran.Round(time.Millisecond), "retry_in", backoff)
		s.update(i, func(st *ChildStatus) { st.NextStartAt = time.Now().Add(backoff) })
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, s.cfg.MaxBackoff)
	}
}

// stop sends StopSignal, then SIGKILL after StopTimeout, and returns the wait error.
func (s *Supervisor) stop(cmd *exec.Cmd, exited <-chan error, log *slog.Logger) error {
	// Signal may race with the child exiting by itself: then it returns
	// os.ErrProcessDone and the exit is already on its way to `exited`.
	if err := cmd.Process.Signal(s.cfg.StopSignal); err != nil && !errors.Is(err, os.ErrProcessDone) {
		log.Warn("dktscore supervise: signal failed", "err", err)
	}
	timer := time.NewTimer(s.cfg.StopTimeout)
	defer timer.Stop()
	select {
	case err := <-exited:
		return err
	case <-timer.C:
		log.Warn("dktscore supervise: child did not stop in time, killing", "pid", cmd.Process.Pid, "after", s.cfg.StopTimeout)
		_ = cmd.Process.Kill()
		return <-exited
	}
}

// probe polls the child's health and readiness until ctx ends.
func (s *Supervisor) probe(ctx context.Context, i int, spec Child) {
	ticker := time.NewTicker(s.cfg.ProbeInterval)
	defer ticker.Stop()
	for {
		healthy, herr := s.get(ctx, spec.HealthURL)
		ready, rerr := healthy, herr
		if spec.ReadyURL != "" && healthy {
			ready, rerr = s.get(ctx, spec.ReadyURL)
		}
		if ctx.Err() != nil {
			return // a poll cut short by the child stopping says nothing
		}
		msg := ""
		if err := errors.Join(herr, rerr); err != nil {
			msg = err.Error()
		}
		s.update(i, func(st *ChildStatus) { st.Healthy, st.Ready, st.ProbeError = healthy, ready, msg })
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (s *Supervisor) get(ctx context.Context, url string) (bool, error) {
	if url == "" {
		return true, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return true, nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func exitDescription(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// exitCode is the child's exit status, or -1 when it was killed by a signal.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}
