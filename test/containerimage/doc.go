// Package containerimage holds the tests of the container image (the
// repository's Dockerfile and .dockerignore) that run without a container
// engine: they build the binary with the Dockerfile's own `go build` line and
// check what the final stage assumes (a static executable, a non-root user,
// a data directory that user owns, the CMD that starts the server).
package containerimage
