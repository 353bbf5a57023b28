package scoring

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const testModel = "../models/dkt"

// options resolves score's flags from args, as the command does.
func options(t *testing.T, args ...string) Options {
	t.Helper()
	var o Options
	if _, err := Settings(&o, "score").Resolve(append(args, "--model", testModel, "--quiet"), nil); err != nil {
		t.Fatal(err)
	}
	return o
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFailedRunKeepsPreviousOutputs: a run that fails (here: interrupted
// before it read anything) leaves the previous run's mastery and rejects files
// as they were, and no temporary file behind; a run that succeeds replaces
// both.
func TestFailedRunKeepsPreviousOutputs(t *testing.T) {
	dir := t.TempDir()
	input := filepath.Join(dir, "in.jsonl")
	writeFile(t, input, `{"student_id": "good", "skills": [1, 2], "correct": [0, 1]}`+"\n"+
		`{"student_id": "bad", "skills": [1, 2], "correct": [0, 7]}`+"\n")
	out := filepath.Join(dir, "o.parquet")
	rejects := out + ".rejects.jsonl"
	writeFile(t, out, "previous mastery")
	writeFile(t, rejects, "previous rejects\n")
	o := options(t, "--input", input, "--output", out)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	if err := Run(ctx, o, &stdout, &stderr); err == nil {
		t.Fatal("an interrupted run succeeded")
	}
	if got := readFile(t, out); got != "previous mastery" {
		t.Errorf("failed run replaced the mastery file: %q", got)
	}
	if got := readFile(t, rejects); got != "previous rejects\n" {
		t.Errorf("failed run replaced the rejects file: %q", got)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".partial") {
			t.Errorf("failed run left %s behind", e.Name())
		}
	}

	if err := Run(context.Background(), o, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, out); !strings.HasPrefix(got, "PAR1") {
		t.Errorf("successful run did not replace the mastery file: %q", got[:min(len(got), 20)])
	}
	if got := readFile(t, rejects); !strings.Contains(got, `"student_id":"bad"`) || strings.Contains(got, "previous") {
		t.Errorf("successful run did not replace the rejects file: %q", got)
	}
	if st, err := os.Stat(rejects); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("rejects file mode: %v %v", st, err)
	}
}
