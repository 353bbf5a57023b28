package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// modelBase makes a TF Serving base directory with version 1 (only the
// saved_model.pb that marks a version directory) and returns it.
func modelBase(t *testing.T) string {
	t.Helper()
	base := t.TempDir()
	if err := os.MkdirAll(filepath.Join(base, "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "1", "saved_model.pb"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return base
}

func TestServeEventModeConfigProblems(t *testing.T) {
	base := modelBase(t)
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		wants []string
	}{
		{"unknown mode", map[string]string{"DKTSCORE_MODE": "batch"}, nil, []string{`DKTSCORE_MODE: "batch" is not sequences or events`}},
		{"flag spells the mode", nil, []string{"--mode", "event"}, []string{`invalid value "event" for flag -mode: not sequences or events`}},
		{"every event problem at once", map[string]string{
			"DKTSCORE_MODE": "events", "DKTSCORE_KAFKA_CHANGELOG_TOPIC": "dkt.mastery",
			"DKTSCORE_STATE_MAX_STUDENTS": "0", "DKTSCORE_STATE_IDLE": "-1s",
		}, nil, []string{"CHANGELOG_TOPIC \"dkt.mastery\" is also the input, output or dead-letter topic",
			"DKTSCORE_STATE_MAX_STUDENTS (--state-max-students) 0 must be at least 1", "DKTSCORE_STATE_IDLE (--state-idle) -1s must be positive"}},
		{"empty changelog topic", nil, []string{"--mode", "events", "--changelog-topic", ""}, []string{"DKTSCORE_KAFKA_CHANGELOG_TOPIC is empty"}},
		{"unpinned model", map[string]string{"DKTSCORE_MODE": "events", "DKTSCORE_MODEL": base},
			nil, []string{"event mode needs a pinned model version", "DKTSCORE_MODEL_VERSION", filepath.Join(base, "1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			if code := run(append([]string{"serve"}, tt.args...), &stdout, &stderr); code != 2 {
				t.Fatalf("exit %d, want 2 for an invalid configuration; stderr:\n%s", code, stderr.String())
			}
			for _, want := range tt.wants {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("error output does not mention %q:\n%s", want, stderr.String())
				}
			}
		})
	}
}

// TestEventModeNeedsAPinnedModel: a base directory alone would load its
// highest version at each start, resetting every state after a new version
// is dropped there; a version pin or a version directory is accepted.
func TestEventModeNeedsAPinnedModel(t *testing.T) {
	base := modelBase(t)
	for _, tt := range []struct {
		name, model, version string
		wantErr              bool
	}{
		{"base directory, no version", base, "", true},
		{"base directory and DKTSCORE_MODEL_VERSION", base, "1", false},
		{"version directory", filepath.Join(base, "1"), "", false},
		{"missing directory", filepath.Join(base, "nope"), "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := []string{"DKTSCORE_MODE=events", "DKTSCORE_MODEL=" + tt.model, "DKTSCORE_MODEL_VERSION=" + tt.version}
			var stderr bytes.Buffer
			_, _, _, refused := configureServe(nil, env, io.Discard, &stderr)
			if pinned := strings.Contains(stderr.String(), "needs a pinned model version"); pinned != tt.wantErr || refused != tt.wantErr {
				t.Fatalf("refused %t (pinned-model problem %t), want %t:\n%s", refused, pinned, tt.wantErr, stderr.String())
			}
		})
	}
}
