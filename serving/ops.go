package serving

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dktscore/dktscore/model"
)

// opsHandler serves liveness, readiness (the model is loaded by the time the
// server starts; the broker must answer) and Prometheus metrics.
func opsHandler(registry *prometheus.Registry, ping func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ping(ctx); err != nil {
			http.Error(w, "broker unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	return mux
}

// openVersions loads the model version to serve and reports every later
// reload to the log and to two metrics: which version is serving
// (dktscore_model_version_info) and how reloads went
// (dktscore_model_reloads_total by result).
func openVersions(cfg Config, load model.Config, registry prometheus.Registerer) (*model.Versions, error) {
	serving := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "dktscore_model_version_info",
		Help: "1 for the model version serving now (label version = name/version).",
	}, []string{"version"})
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "dktscore_model_reloads_total",
		Help: "Model versions loaded (result=loaded, including the first) or refused (result=failed).",
	}, []string{"result"})
	registry.MustRegister(serving, reloads)
	reloads.WithLabelValues("loaded")
	reloads.WithLabelValues("failed")

	report := func(e model.VersionEvent) {
		if e.Err != nil {
			reloads.WithLabelValues("failed").Inc()
			slog.Error("model version refused; the running version keeps serving",
				"version", e.Version, "took", e.Took, "error", e.Err)
			return
		}
		reloads.WithLabelValues("loaded").Inc()
		serving.Reset()
		serving.WithLabelValues(e.Version).Set(1)
		slog.Info("model version serving", "version", e.Version, "load_and_warm", e.Took)
	}
	return model.OpenVersions(model.VersionsConfig{Base: cfg.Model, Pin: cfg.ModelVersion, Load: load, Report: report})
}
