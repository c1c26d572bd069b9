package clients

import (
	"context"
	"testing"

	"github.com/portcullis/portcullis/test/harness"
)

// cranePkg is a tool dependency in go.mod (`go get -tool`), so the module
// pins its version and `go build` can build it offline from the module cache.
const cranePkg = "github.com/google/go-containerregistry/cmd/crane"

// Crane builds crane (once per test process, cached like the portcullis
// binary) and returns its path.
func Crane(t testing.TB) string {
	t.Helper()
	return harness.BuildGoBinary(t, "crane", cranePkg)
}

// CraneRun runs `crane ARGS…` (bounded by ctx and 2 minutes) and returns
// stdout and stderr combined. Plain-http registries need "--insecure".
func CraneRun(ctx context.Context, t testing.TB, args ...string) (string, error) {
	t.Helper()
	return run(ctx, t, Crane(t), args, nil)
}
