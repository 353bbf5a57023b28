package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestServeReportsEveryConfigProblemAtOnce(t *testing.T) {
	t.Setenv("DKTSCORE_KAFKA_BROKERS", "nohostport")
	t.Setenv("DKTSCORE_KAFKA_OUTPUT_TOPIC", "same")
	t.Setenv("DKTSCORE_KAFKA_INPUT_TOPIC", "same")
	t.Setenv("DKTSCORE_DELIVERY", "at-most-once")
	t.Setenv("DKTSCORE_BATCH_SIZE", "0")
	t.Setenv("DKTSCORE_KAFKA_SASL_MECHANISM", "KERBEROS")
	var stdout, stderr bytes.Buffer
	code := run([]string{"serve", "--sessions", "0"}, &stdout, &stderr)
	if code != 2 {
		t.Fatalf("exit %d, want 2 for invalid configuration; stderr:\n%s", code, stderr.String())
	}
	for _, want := range []string{"nohostport", "also an output topic", "at-most-once", "DKTSCORE_BATCH_SIZE (--batch-size) 0", "KERBEROS", "DKTSCORE_SESSIONS (--sessions) 0"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("error output does not mention %q:\n%s", want, stderr.String())
		}
	}
}

func TestServeRejectsMalformedEnvironment(t *testing.T) {
	t.Setenv("DKTSCORE_MAX_DELAY", "soon")
	var stdout, stderr bytes.Buffer
	if code := run([]string{"serve"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "MAX_DELAY") {
		t.Fatalf("exit %d, stderr %q; want 2 naming DKTSCORE_MAX_DELAY", code, stderr.String())
	}
}
