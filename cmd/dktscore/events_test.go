package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestServeEventModeConfigProblems(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		wants []string
	}{
		{"unknown mode", map[string]string{"DKTSCORE_MODE": "batch"}, nil, []string{`DKTSCORE_MODE "batch" is not sequences or events`}},
		{"flag spells the mode", nil, []string{"--mode", "event"}, []string{`DKTSCORE_MODE "event"`}},
		{"every event problem at once", map[string]string{
			"DKTSCORE_MODE": "events", "DKTSCORE_KAFKA_CHANGELOG_TOPIC": "dkt.mastery",
			"DKTSCORE_STATE_MAX_STUDENTS": "0", "DKTSCORE_STATE_IDLE": "-1s",
		}, nil, []string{"CHANGELOG_TOPIC \"dkt.mastery\" is also the input, output or dead-letter topic",
			"DKTSCORE_STATE_MAX_STUDENTS 0 must be at least 1", "DKTSCORE_STATE_IDLE -1s must be positive"}},
		{"empty changelog topic", nil, []string{"--mode", "events", "--changelog-topic", ""}, []string{"DKTSCORE_KAFKA_CHANGELOG_TOPIC is empty"}},
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
