package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/testregistry"
)

func startUpstream(t *testing.T) *testregistry.Registry { return testregistry.Start(t) }

func testregistryImage(t *testing.T, size int64) v1.Image {
	return testregistry.RandomImage(t, 1, size, types.OCIManifestSchema1)
}

func runBinary(t *testing.T, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

func itoa(n int) string { return strconv.Itoa(n) }

// writeFileIn writes content to dir/name and returns the path: files a
// config or policy names beside each other.
func writeFileIn(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
