// Package deploy holds the deployment files — compose, Kubernetes manifests,
// KEDA autoscaling — and the tests that validate them with the tools that
// consume them (compose-go, the Kubernetes API types, BuildKit's parser).
// It has no code of its own.
package deploy
