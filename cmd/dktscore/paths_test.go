package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestScoreRefusesDestructiveOutputPaths: an output path that is the input (by
// any name), another output, a directory, a symbolic link or an existing
// non-regular file is refused with exit 2 before the model loads (the model
// path here does not exist, so getting past the check would exit 1), and the
// file at that path is left as it was.
func TestScoreRefusesDestructiveOutputPaths(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	const inputText = `{"student_id": "a", "skills": [1, 2], "correct": [0, 1]}` + "\n"
	if err := os.WriteFile(input, []byte(inputText), 0o644); err != nil {
		t.Fatal(err)
	}
	inputLink := filepath.Join(dir, "in-link.jsonl")
	must(t, os.Symlink(input, inputLink))
	hardLink := filepath.Join(dir, "hard.parquet")
	must(t, os.Link(input, hardLink))
	outLink := filepath.Join(dir, "link.parquet")
	must(t, os.Symlink(filepath.Join(dir, "target.parquet"), outLink)) // dangling: still refused
	subdir := filepath.Join(dir, "sub")
	must(t, os.Mkdir(subdir, 0o755))
	must(t, os.Mkdir(filepath.Join(dir, "r.parquet.rejects.jsonl"), 0o755))
	fifo := filepath.Join(dir, "fifo.parquet")
	must(t, syscall.Mkfifo(fifo, 0o644))
	out := filepath.Join(dir, "o.parquet")

	cases := []struct {
		name string
		args []string
		want []string // substrings of stderr
	}{
		{"output is input", []string{"--input", input, "--output", input}, []string{"--output " + input, "is the --input file"}},
		{"output is input by symlink", []string{"--input", inputLink, "--output", input}, []string{"--output", "is the --input file"}},
		{"output is a hard link of input", []string{"--input", input, "--output", hardLink}, []string{"--output", "is the --input file"}},
		{"output is a symlink to input", []string{"--input", input, "--output", inputLink}, []string{"--output", "symbolic link"}},
		{"output is a dangling symlink", []string{"--input", input, "--output", outLink}, []string{"--output", "symbolic link", "name the target itself"}},
		{"output is a directory", []string{"--input", input, "--output", subdir}, []string{"--output " + subdir + " is a directory"}},
		{"output is /dev/null", []string{"--input", input, "--output", "/dev/null"}, []string{"--output /dev/null", "not a regular file", "character device"}},
		{"output is a FIFO", []string{"--input", input, "--output", fifo}, []string{"--output", "named pipe"}},
		{"rejects file is a directory", []string{"--input", input, "--output", filepath.Join(dir, "r.parquet")}, []string{"rejects file", "is a directory", "choose another --output"}},
		{"emit-state is input", []string{"--input", input, "--output", out, "--emit-state", input}, []string{"--emit-state " + input, "is the --input file", "choose another --emit-state"}},
		{"emit-state is output, spelled differently", []string{"--input", input, "--output", out, "--emit-state", filepath.Join(subdir, "..", "o.parquet")},
			[]string{"--emit-state", "is the same file as --output " + out}},
		{"emit-state is the trajectory", []string{"--input", input, "--output", out, "--trajectory", "--emit-state", filepath.Join(dir, "o.trajectory.parquet")},
			[]string{"--emit-state", "is the same file as the trajectory file"}},
		{"trajectory is input", []string{"--input", filepath.Join(dir, "x.trajectory.jsonl"), "--output", filepath.Join(dir, "x.jsonl"), "--trajectory"},
			[]string{"the trajectory file", "is the --input file"}},
	}
	must(t, os.WriteFile(filepath.Join(dir, "x.trajectory.jsonl"), []byte(inputText), 0o644))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"score", "--model", filepath.Join(dir, "no-such-model"), "--quiet"}, c.args...)
			code := run(args, &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit %d, want 2\n%s", code, stderr.String())
			}
			for _, w := range c.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			if strings.Contains(stderr.String(), "no-such-model") {
				t.Errorf("the model was looked at before the paths were checked:\n%s", stderr.String())
			}
		})
	}
	if got, _ := os.ReadFile(input); string(got) != inputText {
		t.Errorf("input changed to %q", got)
	}
	if st, err := os.Lstat(outLink); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("symlink at an output path was replaced: %v %v", st, err)
	}
	if st, err := os.Stat(fifo); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("FIFO at an output path was replaced: %v %v", st, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
