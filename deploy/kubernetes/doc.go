// Package kubernetes holds the Kubernetes manifests (kustomize: base/ and
// overlays/single, overlays/ha) and the test that renders every overlay with
// the kustomize Go API, decodes each object strictly into its k8s.io/api type
// and checks each pod template against the "restricted" Pod Security
// Standard. It has no code of its own.
package kubernetes
