package supervise

import (
	"github.com/dktscore/dktscore/internal/promtest"

	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The parent's /metrics shows every child's series with a worker label, and a
// child that does not answer is reported by dktscore_supervised_scrape_ok
// without hiding the others.
func TestSupervisorMetricsLabelEveryChild(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	child := func(consumed float64) *httptest.Server {
		reg := prometheus.NewRegistry()
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "dktscore_consumed_total", Help: "Records read."})
		c.Add(consumed)
		reg.MustRegister(c)
		return httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	}
	gpu0, gpu1, down := child(5), child(7), child(0)
	defer gpu0.Close()
	defer gpu1.Close()
	down.Close() // a child that is restarting

	parent := httptest.NewServer(promhttp.HandlerFor(newChildMetrics(map[string]string{
		"gpu0": gpu0.URL + "/metrics", "gpu1": gpu1.URL + "/metrics", "gpu2": down.URL + "/metrics",
	}), promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	defer parent.Close()

	got, _, err := promtest.Scrape(ctx, parent.URL)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"dktscore_consumed_total{worker=gpu0}":       5,
		"dktscore_consumed_total{worker=gpu1}":       7,
		"dktscore_supervised_scrape_ok{worker=gpu0}": 1,
		"dktscore_supervised_scrape_ok{worker=gpu1}": 1,
		"dktscore_supervised_scrape_ok{worker=gpu2}": 0,
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || g != w {
			t.Errorf("%s = %v (present %v), want %v; scrape: %v", name, g, ok, w, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("scrape has %d series, want %d: %v", len(got), len(want), got)
	}
}

// Children are scraped at once: each child here answers only after every
// child has been asked, so scraping them one after another would time every
// one out (scrape_ok 0) instead of collecting them all.
func TestSupervisorScrapesChildrenConcurrently(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 4
	var mu sync.Mutex
	asked := 0
	allAsked := make(chan struct{})
	urls := map[string]string{}
	for i := range n {
		reg := prometheus.NewRegistry()
		reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "dktscore_consumed_total", Help: "Records read."}))
		metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
		child := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			if asked++; asked == n {
				close(allAsked)
			}
			mu.Unlock()
			select {
			case <-allAsked:
				metrics.ServeHTTP(w, r)
			case <-r.Context().Done():
			}
		}))
		defer child.Close()
		urls[fmt.Sprintf("gpu%d", i)] = child.URL + "/metrics"
	}
	gatherer := newChildMetrics(urls)
	gatherer.timeout = 10 * time.Second // a bound for the sequential failure, not a speed assertion
	parent := httptest.NewServer(promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	defer parent.Close()

	got, _, err := promtest.Scrape(ctx, parent.URL)
	if err != nil {
		t.Fatal(err)
	}
	for name := range urls {
		if ok := got["dktscore_supervised_scrape_ok{worker="+name+"}"]; ok != 1 {
			t.Errorf("%s: scrape_ok %v, want 1; scrape: %v", name, ok, got)
		}
	}
}
