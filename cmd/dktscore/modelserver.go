package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/dktscore/dktscore/modelserver"
)

const modelServerIntro = `Usage: dktscore model-server --port=8500 [--rest_api_port=8501] --model_name=NAME --model_base_path=DIR [flags]

Serves TensorFlow Serving's API — gRPC tensorflow.serving.PredictionService
(Predict, GetModelMetadata), ModelService (GetModelStatus) and
grpc.health.v1.Health on --port; the REST API on --rest_api_port — for the
model under --model_base_path (NAME/VERSION layout; the highest version is
served, new ones are loaded as they appear). It takes tensorflow_model_server's
own flags, so the same command line works with the binary name changed, and
batches the sequences of concurrent requests together (signatures predict and
predict_ids), which TF Serving cannot do for this model.
`

func modelServerCmd(args []string, stdout, stderr io.Writer) int {
	var cfg modelserver.Config
	set := modelserver.Settings(&cfg)
	res, err := set.Resolve(args, os.Environ())
	if res.Help {
		set.WriteUsage(stdout, modelServerIntro)
		return 0
	}
	// The images set DKTSCORE_MODEL for serve: not a typo here.
	unknown := withoutServeVariables(res.Unknown)
	if err != nil {
		writeProblems(stderr, "dktscore model-server", err, unknown)
		return 2
	}
	log := cfg.NewLogger(stderr)
	slog.SetDefault(log)
	for _, u := range unknown {
		log.Warn("environment variable is not read by dktscore model-server", "variable", u.Name, "did_you_mean", u.Suggestion)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := modelserver.Serve(ctx, cfg, log); err != nil {
		log.Error("dktscore model-server failed", "error", err)
		return 1
	}
	return 0
}
