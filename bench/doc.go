// Package bench measures the engine: `dktscore bench` times model.Predict
// over pre-built batches (no I/O, no decoding) and event mode's carried
// state against re-scoring histories, and loads a running TF Serving front
// door (model-server) with the origin's one-sequence requests. The
// side-by-side benchmark of the
// whole product (score, serve, Python baselines) is `make bench`, run by
// run.py beside this package.
package bench
