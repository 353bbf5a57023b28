// Package promtest reads Prometheus metrics over HTTP for tests, the way a
// real scraper does.
package promtest

import (
	"context"
	"fmt"
	"net/http"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape GETs a Prometheus text exposition: family name → samples,
// each keyed "name{label=value}" (histograms as name_count and name_sum).
func Scrape(ctx context.Context, url string) (map[string]float64, map[string]bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: not the Prometheus text format: %w", url, err)
	}
	samples, names := map[string]float64{}, map[string]bool{}
	for name, f := range families {
		names[name] = true
		for _, m := range f.GetMetric() {
			key := name
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case m.GetCounter() != nil:
				samples[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				samples[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				samples[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
				samples[key+"_sum"] = m.GetHistogram().GetSampleSum()
				names[name+"_bucket"], names[name+"_count"], names[name+"_sum"] = true, true, true
			}
		}
	}
	return samples, names, nil
}
