package worker

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dktscore/dktscore/internal/promtest"
	"github.com/dktscore/dktscore/internal/rejectstest"
	"github.com/dktscore/dktscore/io/records"
)

// rejectedWork decodes one JSON line, which must be rejected, into work.
func rejectedWork(t *testing.T, value string) Work {
	t.Helper()
	r, err := records.NewReader(strings.NewReader(value+"\n"), "in", records.FormatJSONL, records.Options{NumSkills: testSkills, MaxLineBytes: rejectstest.MaxBytes})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Next()
	var reject *records.RejectError
	if !errors.As(err, &reject) {
		t.Fatalf("%q: %v, want a reject", value, err)
	}
	return Work{Reject: reject}
}

// File decoders word some reasons differently; every one must still carry a
// named kind, never "other".
func TestFileRejectsCarryTheirKind(t *testing.T) {
	cases := []struct {
		format records.Format
		input  string
		kind   records.RejectKind
	}{
		{records.FormatDKT3, "2\n1,9\n1,0\n", records.RejectSkillRange},
		{records.FormatDKT3, "2\n1,1\n1,5\n", records.RejectBadCorrect},
		{records.FormatDKT3, "2\n1,1,1\n1,0\n", records.RejectLengthMismatch},
		{records.FormatDKT3, "x\n", records.RejectMalformed},
		{records.FormatDKT3, "2\n1,1\n", records.RejectMalformed},
		{records.FormatCSV, "student_id,skill_id,correct\na,x,1\n", records.RejectMalformed},
		{records.FormatCSV, "student_id,skill_id,correct\na,1,3\n", records.RejectBadCorrect},
		{records.FormatCSV, "student_id,skill_id,correct\n,1,1\n", records.RejectBadStudentID},
		{records.FormatCSV, "student_id,skill_id,correct\na,1,1\nb,1,1\na,1,1\n", records.RejectOutOfOrder},
		{records.FormatCSV, "student_id,skill_id,correct,timestamp\na,1,1,yesterday\n", records.RejectBadTimestamp},
		{records.FormatCSV, "student_id,skill_id,correct,timestamp\na,1,1,5\na,1,1,2020-01-01T00:00:00Z\n", records.RejectBadTimestamp},
		{records.FormatJSONL, `{"student_id": "a", "skills": [1], "correct": [1, 0]}` + "\n", records.RejectLengthMismatch},
	}
	for _, c := range cases {
		r, err := records.NewReader(strings.NewReader(c.input), "test", c.format, records.Options{NumSkills: testSkills})
		if err != nil {
			t.Fatal(err)
		}
		rejects := 0
		for {
			_, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err == nil {
				continue // the good records around a bad one
			}
			var reject *records.RejectError
			if !errors.As(err, &reject) {
				t.Fatalf("%s %q: %v", c.format, c.input, err)
			}
			rejects++
			if reject.Kind != c.kind {
				t.Errorf("%s %q: kind %q (reason %q), want %s", c.format, c.input, reject.Kind, reject.Reason, c.kind)
			}
		}
		if rejects == 0 {
			t.Errorf("%s %q was not rejected", c.format, c.input)
		}
	}
}

// DecodeEventMessage adds its own checks (size, key) to DecodeJSONEvent's.

// A reject built without a kind is a bug in its creator, but it is still
// counted — as other — rather than lost or given an empty label.
func TestRejectWithoutAKindCountsAsOther(t *testing.T) {
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg, new(Progress), nil)
	sink := metrics.CountRejects(&memoryRejects{})
	if err := sink.Reject(context.Background(), Work{Reject: &records.RejectError{Record: -1, Reason: "no kind"}}); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "dktscore_rejects_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				counts[l.GetValue()] += m.GetCounter().GetValue()
			}
		}
	}
	if counts[string(records.RejectOther)] != 1 || len(counts) != len(records.RejectKinds) {
		t.Errorf("rejects by kind = %v, want other = 1 and no series beyond the %d kinds", counts, len(records.RejectKinds))
	}
}

// A known workload through Run, then /metrics over HTTP: every counter must
// match the workload exactly.
func TestMetricsMatchAKnownWorkload(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	good := randomWorks(150, 7)
	works := append([]Work(nil), good...)
	wantKinds := map[records.RejectKind]float64{}
	for _, c := range rejectstest.Sequences {
		w := rejectedWork(t, c.Value)
		if w.Reject.Kind != c.Kind {
			t.Fatalf("%q: kind %q (reason %q), want %s", c.Value, w.Reject.Kind, w.Reject.Reason, c.Kind)
		}
		works = append(works, w)
		wantKinds[c.Kind]++
	}
	wantSteps := 0
	for _, w := range good {
		wantSteps += len(w.Seq.Skills)
	}

	reg := prometheus.NewRegistry()
	progress := new(Progress)
	metrics := NewMetrics(reg, progress, nil)
	server := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer server.Close()

	cfg := testConfig()
	cfg.Observer = metrics
	src := &sliceSource{works: works, acks: map[int][]error{}}
	sink := &memorySink{results: map[string]Result{}}
	sum, err := Run(ctx, cfg, src, sumEngine{}, sink, metrics.CountRejects(&memoryRejects{}), progress)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := promtest.Scrape(ctx, server.URL+"/metrics")
	if err != nil {
		t.Fatal(err)
	}

	want := map[string]float64{
		"dktscore_consumed_total":          float64(len(works)),
		"dktscore_scored_total":            float64(len(good)),
		"dktscore_dead_lettered_total":     float64(len(rejectstest.Sequences)),
		"dktscore_real_steps_total":        float64(wantSteps),
		"dktscore_computed_steps_total":    float64(sum.Computed),
		"dktscore_padding_efficiency":      float64(wantSteps) / float64(sum.Computed),
		"dktscore_in_flight":               0,
		"dktscore_batcher_pending":         0,
		"dktscore_batch_size_count":        float64(sum.Batches),
		"dktscore_batch_size_sum":          float64(len(good)),
		"dktscore_inference_seconds_count": float64(sum.Batches),
	}
	for _, kind := range records.RejectKinds {
		want["dktscore_rejects_total{kind="+string(kind)+"}"] = wantKinds[kind]
	}
	flushes := 0.0
	for reason, n := range sum.Flushes {
		want["dktscore_batch_flushes_total{reason="+reason+"}"] = float64(n)
		flushes += float64(n)
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("%s is not exported", name)
		} else if math.Abs(g-w) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, g, w)
		}
	}
	if flushes != float64(sum.Batches) || sum.Batches == 0 {
		t.Errorf("flushes by reason sum to %v, want the %d batches", flushes, sum.Batches)
	}
	if _, ok := got["dktscore_commit_lag"]; ok {
		t.Error("dktscore_commit_lag exported without a lag function")
	}
}
