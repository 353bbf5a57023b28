package config

import "testing"

func TestSuggestEnv(t *testing.T) {
	known := []string{"DKTSCORE_SESSIONS", "DKTSCORE_KAFKA_INPUT_TOPIC", "DKTSCORE_KAFKA_GROUP", "DKTSCORE_MAX_DELAY", "DKTSCORE_GPUS"}
	cases := map[string]string{
		"DKTSCORE_SESIONS":        "DKTSCORE_SESSIONS",
		"DKTSCORE_SESSION":        "DKTSCORE_SESSIONS",
		"DKTSCORE_KAFKA_GRUOP":    "DKTSCORE_KAFKA_GROUP",
		"DKTSCORE_GROUP":          "DKTSCORE_KAFKA_GROUP",
		"DKTSCORE_MAXDELAY":       "DKTSCORE_MAX_DELAY",
		"dktscore_gpus":           "DKTSCORE_GPUS",
		"DKTSCORE_FROBNICATE":     "",
		"DKTSCORE_OUTPUT_FORMAT":  "",
		"DKTSCORE_TOTALLY_UNLIKE": "",
	}
	for name, want := range cases {
		if got := suggest(name, known); got != want {
			t.Errorf("suggest(%s) = %q, want %q", name, got, want)
		}
	}
}
