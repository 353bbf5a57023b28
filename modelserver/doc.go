// Package modelserver runs `dktscore model-server`, a drop-in for
// tensorflow_model_server: it takes TF Serving's flags, answers its gRPC API
// (PredictionService, ModelService, the gRPC health service) and its REST
// API, and sends the sequences of all callers' Predict requests through one
// batching pipeline — which TF Serving cannot do for this model, whose
// signature has scalar inputs. Each caller gets pred_all exactly as its own
// request was shaped.
package modelserver
