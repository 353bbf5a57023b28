package lifecycle

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dktscore/dktscore/model"
)

// OpenVersions loads the model version to serve from cfg and reports every
// later reload to the log and to two metrics: which version is serving
// (dktscore_model_version_info) and how reloads went
// (dktscore_model_reloads_total by result). cfg.Report, when set, hears
// each event after them.
func OpenVersions(cfg model.VersionsConfig, registry prometheus.Registerer) (*model.Versions, error) {
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

	also := cfg.Report
	cfg.Report = func(e model.VersionEvent) {
		if also != nil {
			defer also(e)
		}
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
	return model.OpenVersions(cfg)
}
