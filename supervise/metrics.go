package supervise

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

// childMetrics gathers every supervised worker's /metrics for the parent's
// /metrics, each series labelled worker=<child name>. With one worker per GPU
// the children listen on ports a pod's scrape annotation does not name; this
// keeps one scrape target per pod, as with a single worker.
//
// A child that does not answer (restarting, still loading its model) is left
// out of that scrape rather than failing it, so the other GPUs stay visible;
// dktscore_supervised_scrape_ok says which answered.
type childMetrics struct {
	children map[string]string // name → metrics URL
	client   *http.Client
	// timeout bounds one scrape of all children together: they are asked at
	// once, so a hung child costs the scrape this long, not this long each.
	timeout time.Duration
}

func newChildMetrics(children map[string]string) *childMetrics {
	return &childMetrics{children: children, client: &http.Client{}, timeout: 5 * time.Second}
}

const childLabel = "worker"

// MetricsHandler serves every child's metrics in one scrape, each series
// labelled worker=<child name>.
func (s *Supervisor) MetricsHandler() http.Handler {
	urls := map[string]string{}
	for _, c := range s.cfg.Children {
		if c.MetricsURL != "" {
			urls[c.Name] = c.MetricsURL
		}
	}
	return promhttp.HandlerFor(newChildMetrics(urls), promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Gather implements prometheus.Gatherer.
func (c *childMetrics) Gather() ([]*dto.MetricFamily, error) {
	up := &dto.MetricFamily{
		Name: proto.String("dktscore_supervised_scrape_ok"),
		Help: proto.String("1 when the supervised worker answered this scrape of its /metrics, else 0."),
		Type: dto.MetricType_GAUGE.Enum(),
	}
	type answer struct {
		name     string
		families []*dto.MetricFamily
		err      error
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	answers := make([]answer, 0, len(c.children))
	for name := range c.children {
		answers = append(answers, answer{name: name})
	}
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			a := &answers[i] // each goroutine writes only its own element
			a.families, a.err = c.scrape(ctx, c.children[a.name])
		})
	}
	wg.Wait() // every scrape ends by ctx's deadline

	var all []prometheus.Gatherer
	for _, a := range answers {
		name, families, err := a.name, a.families, a.err
		ok := 0.0
		if err == nil {
			ok = 1
			for _, f := range families {
				for _, m := range f.Metric {
					m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(childLabel), Value: proto.String(name)})
				}
			}
			all = append(all, staticGatherer(families))
		}
		up.Metric = append(up.Metric, &dto.Metric{
			Label: []*dto.LabelPair{{Name: proto.String(childLabel), Value: proto.String(name)}},
			Gauge: &dto.Gauge{Value: proto.Float64(ok)},
		})
	}
	all = append(all, staticGatherer{up})
	// Gatherers merges same-named families across children and checks that
	// their types and help agree.
	return prometheus.Gatherers(all).Gather()
}

func (c *childMetrics) scrape(ctx context.Context, url string) ([]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	byName, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if len(byName) == 0 {
		return nil, errors.New("no metrics")
	}
	families := make([]*dto.MetricFamily, 0, len(byName))
	for _, f := range byName {
		families = append(families, f)
	}
	return families, nil
}

type staticGatherer []*dto.MetricFamily

func (s staticGatherer) Gather() ([]*dto.MetricFamily, error) { return s, nil }
