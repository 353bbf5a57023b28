package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestScoreAllRejectedFails: a run that read records but rejected every one
// exits 1, saying how many and where the reasons are; the rejects file is
// written. With --input-format forced, the message points at the flag.
func TestScoreAllRejectedFails(t *testing.T) {
	dir := t.TempDir()
	jsonl := filepath.Join(dir, "in.jsonl")
	if err := os.WriteFile(jsonl, []byte(`{"student_id":"a","skills":[100000],"correct":[1]}`+"\n"+
		`{"student_id":"b","skills":[1],"correct":[5]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dkt3 := filepath.Join(dir, "in.txt")
	if err := os.WriteFile(dkt3, []byte("2\n1,2\n0,1\n1\n3\n1\n1\n4\n0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		args  []string
		n     int
		wants []string
	}{
		{"bad records", []string{"--input", jsonl}, 2, []string{"all 2 records of " + jsonl + " were rejected", "--input-format"}},
		{"forced wrong format", []string{"--input", dkt3, "--input-format", "jsonl"}, 9, []string{"all 9 records", "--input-format jsonl was given"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, "o"+string(rune('0'+i))+".parquet")
			rejects := out + ".rejects.jsonl"
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"score", "--model", testModel, "--output", out, "--quiet"}, c.args...), &stdout, &stderr)
			if code != 1 {
				t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
			for _, w := range append(c.wants, "the reason for each is in "+rejects) {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			f, err := os.Open(rejects)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			lines := 0
			for sc := bufio.NewScanner(f); sc.Scan(); {
				lines++
			}
			if lines != c.n {
				t.Errorf("rejects file has %d lines, want %d", lines, c.n)
			}
		})
	}
	// An input with one good record still succeeds.
	good := filepath.Join(dir, "good.jsonl")
	if err := os.WriteFile(good, []byte(`{"student_id":"a","skills":[100000],"correct":[1]}`+"\n"+
		`{"student_id":"b","skills":[1],"correct":[1]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runCommand(t, "score", "--model", testModel, "--input", good, "--output", filepath.Join(dir, "good.parquet"), "--quiet")
}
