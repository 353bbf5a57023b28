package main

import (
	"flag"
	"fmt"
	"testing"

	"github.com/caarlos0/env/v11"

	"github.com/dktscore/dktscore/batching"
)

// The batch policy and thread settings were chosen by one measurement
// (BENCHMARKS.md, "Tuning"); score, bench and serve must all start from them,
// or a benchmark of one says nothing about the other.
func TestScoreAndServeShareTheTunedDefaults(t *testing.T) {
	fs := flag.NewFlagSet("score", flag.ContinueOnError)
	var f scoreFlags
	f.register(fs)
	serve, err := env.ParseAsWithOptions[serveConfig](env.Options{Prefix: "DKTSCORE_", Environment: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flag, variable string
		serve          any
	}{
		{"batch-size", "DKTSCORE_BATCH_SIZE", serve.BatchSize},
		{"max-padded-steps", "DKTSCORE_MAX_PADDED_STEPS", serve.MaxPaddedSteps},
		{"bucket-growth", "DKTSCORE_BUCKET_GROWTH", serve.BucketGrowth},
		{"sessions", "DKTSCORE_SESSIONS", serve.Sessions},
		{"threads", "DKTSCORE_THREADS", serve.Threads},
	} {
		if got, want := fs.Lookup(tc.flag).DefValue, fmt.Sprint(tc.serve); got != want {
			t.Errorf("score --%s defaults to %s, serve's %s to %s", tc.flag, got, tc.variable, want)
		}
	}
	if serve.BucketGrowth != batching.DefaultBucketGrowth {
		t.Errorf("serve's bucket growth %v is not batching.DefaultBucketGrowth %v", serve.BucketGrowth, batching.DefaultBucketGrowth)
	}
}
