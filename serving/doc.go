// Package serving runs `dktscore serve`: it places worker processes on the
// GPUs (supervising one child per GPU), loads and hot-reloads the model,
// wires the Kafka source and sinks of the chosen mode (whole histories or
// single events) to the scoring pipeline, serves /healthz, /readyz and
// /metrics, and owns the lifecycle — everything starts and stops in one
// group, and SIGTERM drains, commits and closes within the shutdown timeout.
package serving
