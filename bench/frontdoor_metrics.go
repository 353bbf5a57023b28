package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// serverWindow is what the server's own metrics say about a row's recorded
// window: the batches it formed from the clients' requests, why it flushed
// them, and how busy its sessions were.
type serverWindow struct {
	Batches       int            `json:"batches"`
	Sequences     int            `json:"sequences"`
	MeanBatchSize float64        `json:"mean_batch_size"`
	Flushes       map[string]int `json:"flushes"` // by reason: size, bucket, delay, drain, idle
	// InferenceSeconds is the session run time of the window's batches,
	// summed over sessions; ÷ the window, how many sessions were busy on average.
	InferenceSeconds float64 `json:"inference_s"`
	BusySessions     float64 `json:"busy_sessions"`
	// Padding is real ÷ computed steps of the window's batches.
	Padding float64 `json:"padding_efficiency"`
	// CPUSeconds is the server process's CPU time over the window
	// (process_cpu_seconds_total), TensorFlow's threads included.
	CPUSeconds float64 `json:"cpu_s"`
}

// metricSample is one scrape: each sample's value by its series, e.g.
// `dktscore_batch_flushes_total{reason="idle"}`.
type metricSample map[string]float64

// scrape reads the Prometheus text exposition at url.
func scrape(ctx context.Context, url string) (metricSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the lines `series value` of the text format; comments
// and timestamps are skipped.
func parseMetrics(r io.Reader) (metricSample, error) {
	out := metricSample{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// The series may hold spaces inside label values; the value follows the
		// last '}' or, without labels, the name.
		rest := line
		series := ""
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			series, rest = line[:i+1], line[i+1:]
		} else if i := strings.IndexByte(line, ' '); i >= 0 {
			series, rest = line[:i], line[i:]
		}
		fields := strings.Fields(rest)
		if series == "" || len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		out[series] = v
	}
	return out, sc.Err()
}

// window is the difference of two scrapes of model-server's pipeline metrics.
func window(before, after metricSample, d time.Duration) *serverWindow {
	delta := func(series string) float64 { return after[series] - before[series] }
	w := &serverWindow{Batches: int(delta("dktscore_batch_size_count")), Sequences: int(delta("dktscore_batch_size_sum")),
		Flushes: map[string]int{}, InferenceSeconds: delta("dktscore_inference_seconds_sum"), CPUSeconds: delta("process_cpu_seconds_total")}
	if w.Batches > 0 {
		w.MeanBatchSize = float64(w.Sequences) / float64(w.Batches)
	}
	const flushes = `dktscore_batch_flushes_total{reason="`
	for series := range after {
		if reason, ok := strings.CutPrefix(series, flushes); ok {
			if n := int(delta(series)); n > 0 {
				w.Flushes[strings.TrimSuffix(reason, `"}`)] = n
			}
		}
	}
	w.BusySessions = w.InferenceSeconds / d.Seconds()
	if computed := delta("dktscore_computed_steps_total"); computed > 0 {
		w.Padding = delta("dktscore_real_steps_total") / computed
	}
	return w
}
