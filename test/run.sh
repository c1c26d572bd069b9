#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs the real clients
# the end-to-end tests drive, then runs every Go test (fuzz seeds included).
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
need=()
command -v skopeo >/dev/null || need+=(skopeo)
command -v containerd >/dev/null && command -v ctr >/dev/null || need+=(containerd)
command -v podman >/dev/null || need+=(podman)
command -v redis-server >/dev/null || need+=(redis-server)
# The dashboard's tests (test/browser) drive a headless chromium.
command -v chromium >/dev/null || need+=(chromium)
# The scanner's clamd tests start Debian's clamd with a private config and
# a signature database they write (nothing is downloaded).
command -v clamd >/dev/null || [ -x /usr/sbin/clamd ] || need+=(clamav-daemon)
if [ ${#need[@]} -gt 0 ]; then
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
# The cosign CLI is not in Debian: build the version the project's library
# is pinned to from the module proxy (about 2 minutes the first time).
export PATH="$(go env GOPATH)/bin:$PATH"
if ! cosign version 2>/dev/null | grep -q 'v2.6.5'; then
  GOBIN="$(go env GOPATH)/bin" go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5
fi
# An S3-compatible server for the shared-storage tests (test/s3server),
# built from the module proxy: about 3 minutes the first time.
gobin="$(go env GOPATH)/bin"
if ! go version -m "$gobin/versitygw" 2>/dev/null | grep -q 'mod[[:space:]]*github.com/versity/versitygw[[:space:]]*v1.8.0'; then
  GOBIN="$gobin" go install github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
# One build configuration for the tests, the binaries they start and the
# container image (Dockerfile: static, -trimpath): packages compile once,
# and the image test's build of the binary only links.
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath"
go vet ./...
go test -timeout 25m "$@" ./...
