package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// scoreChildEnv makes the test binary run `dktscore` with its arguments
// instead of the tests: the score command as a process of its own, with real
// signals and a real stdin.
const scoreChildEnv = "DKTSCORE_TEST_RUN_MAIN"

func init() {
	if os.Getenv(scoreChildEnv) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
}

func scoreChild(t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, append([]string{"score", "--model", "../../models/dkt", "--quiet"}, args...)...)
	cmd.Env = append(os.Environ(), scoreChildEnv+"=1", "TF_CPP_MIN_LOG_LEVEL=2")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

// waitExit waits for cmd with a generous bound, so that a hang fails the
// test instead of stalling it; how fast it stops is not asserted here.
func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("score did not exit within 60s of SIGTERM")
		return -1
	}
}

// TestScoreSIGTERMOnSilentFIFO: score reading a named pipe (named .csv, so
// its format is sniffed) stops on SIGTERM with a clear message and a non-zero
// exit, both while the pipe has no writer and while a writer holds it open
// without writing, and the previous run's output is left as it was.
func TestScoreSIGTERMOnSilentFIFO(t *testing.T) {
	for _, writer := range []bool{false, true} {
		name := map[bool]string{false: "no writer", true: "silent writer"}[writer]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			fifo := filepath.Join(dir, "in.csv")
			must(t, syscall.Mkfifo(fifo, 0o600))
			out := filepath.Join(dir, "o.parquet")
			must(t, os.WriteFile(out, []byte("previous"), 0o644))
			cmd, _, stderr := scoreChild(t, "--input", fifo, "--output", out)
			must(t, cmd.Start())
			if !writer {
				waitFIFOOpen(t, cmd.Process.Pid, stderr)
			}
			if writer {
				// Opening the write end without blocking succeeds only once
				// score has the read end open: then it waits on the first line.
				deadline := time.Now().Add(60 * time.Second)
				for {
					w, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0)
					if err == nil {
						defer w.Close()
						break
					}
					if time.Now().After(deadline) {
						cmd.Process.Kill()
						t.Fatalf("score never opened the pipe: %v; stderr: %s", err, stderr)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
			must(t, cmd.Process.Signal(syscall.SIGTERM))
			code := waitExit(t, cmd)
			if code == 0 {
				t.Errorf("exit 0 after SIGTERM; stderr: %s", stderr)
			}
			if !strings.Contains(stderr.String(), "interrupted while") || !strings.Contains(stderr.String(), "no output was replaced") {
				t.Errorf("stderr does not say it was interrupted and what is kept: %s", stderr)
			}
			if b, _ := os.ReadFile(out); string(b) != "previous" {
				t.Errorf("the previous output was replaced: %q", b)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.HasSuffix(e.Name(), ".partial") {
					t.Errorf("left %s behind", e.Name())
				}
			}
		})
	}
}

// waitFIFOOpen waits until a thread of process pid sleeps in the kernel's
// FIFO open, waiting for a writer.
func waitFIFOOpen(t *testing.T, pid int, stderr *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "wchan"))
		for _, task := range tasks {
			if b, err := os.ReadFile(task); err == nil && (strings.Contains(string(b), "fifo") || strings.Contains(string(b), "partner")) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("score never waited on the pipe; stderr: %s", stderr)
}

// TestScoreStdin: `--input -` reads stdin, its format sniffed from the bytes.
func TestScoreStdin(t *testing.T) {
	out := filepath.Join(t.TempDir(), "o.parquet")
	cmd, stdout, stderr := scoreChild(t, "--input", "-", "--output", out)
	in := "student_id,skill_id,correct\na,1,0\na,2,1\nb,3,1\nc,x,1\n"
	cmd.Stdin = strings.NewReader(in)
	must(t, cmd.Start())
	if code := waitExit(t, cmd); code != 0 {
		t.Fatalf("exit %d; stderr: %s", code, stderr)
	}
	if !strings.Contains(stdout.String(), "students=2 interactions=3 rejected=1") {
		t.Errorf("summary: %s", stdout)
	}
	rejects, err := os.ReadFile(out + ".rejects.jsonl")
	if err != nil || !strings.Contains(string(rejects), `"input":"stdin"`) {
		t.Errorf("rejects: %s %v", rejects, err)
	}
	// --emit-state reads the input twice, which stdin cannot give.
	cmd, _, stderr = scoreChild(t, "--input", "-", "--output", out, "--emit-state", out+".state.parquet")
	cmd.Stdin = strings.NewReader(in)
	must(t, cmd.Start())
	if code := waitExit(t, cmd); code != 2 || !strings.Contains(stderr.String(), "--emit-state reads --input - a second time") {
		t.Errorf("emit-state from stdin: exit %d; %s", code, stderr)
	}
}
