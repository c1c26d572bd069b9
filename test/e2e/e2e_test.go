// Package e2e drives a real portcullis binary against real upstream
// registries on loopback and checks what a client sees: status codes, error
// bodies, headers and bytes, and what reached the upstream.
package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/proxy/cache"
	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

// setup is one upstream registry, named up.test, behind a portcullis.
type setup struct {
	up  *testregistry.Registry
	pc  *harness.Portcullis
	bin string
}

func start(t *testing.T, extraArgs ...string) *setup {
	t.Helper()
	up := testregistry.Start(t)
	bin := harness.BuildPortcullis(t)
	args := append([]string{"--upstream", "up.test=" + up.URL(), "--default-upstream", "up.test"}, extraArgs...)
	return &setup{up: up, pc: harness.StartPortcullis(t, bin, args...), bin: bin}
}

// withConfig starts portcullis with a YAML configuration file.
func withConfig(t *testing.T, up *testregistry.Registry, yaml string) *harness.Portcullis {
	t.Helper()
	path := filepath.Join(t.TempDir(), "portcullis.yaml")
	yaml = strings.ReplaceAll(yaml, "UPSTREAM_URL", up.URL())
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return harness.StartPortcullis(t, harness.BuildPortcullis(t), "--config", path)
}

var client = &http.Client{Timeout: 2 * time.Minute}

type response struct {
	status int
	header http.Header
	body   []byte
	err    error // transport error, including a body cut short
}

func do(t *testing.T, method, url string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: body, err: err}
}

// ociError decodes an OCI error body and returns its first code.
func ociError(t *testing.T, r response) (code, message string) {
	t.Helper()
	var e struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("status %d: body is not an OCI error: %q", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	return e.Errors[0].Code, e.Errors[0].Message
}

func wantError(t *testing.T, r response, status int, code string) string {
	t.Helper()
	if r.err != nil {
		t.Fatalf("transport error %v, want %d %s", r.err, status, code)
	}
	got, msg := ociError(t, r)
	if r.status != status || got != code {
		t.Fatalf("got %d %s (%s), want %d %s", r.status, got, msg, status, code)
	}
	return msg
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func layers(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Hash
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func ociImage(t *testing.T, layerSize int64) v1.Image {
	return testregistry.RandomImage(t, 2, layerSize, types.OCIManifestSchema1)
}

// cachedBlobs lists digests committed to portcullis' filesystem cache.
// spoolContents lists the files in portcullis's spool that hold bytes (a
// download's partial writes) and counts the empty ones (the spares it
// keeps, at most cache.SpareSpoolFiles).
func spoolContents(t *testing.T, dataDir string) (partial []string, empty int) {
	t.Helper()
	dir := filepath.Join(dataDir, "cache", "_spool")
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		switch {
		case os.IsNotExist(err): // taken and committed meanwhile
		case err != nil:
			t.Fatal(err)
		case info.Size() > 0:
			partial = append(partial, e.Name())
		default:
			empty++
		}
	}
	return partial, empty
}

// spoolHoldsOnlySpares reports whether nothing but spare, empty files is in
// the spool.
func spoolHoldsOnlySpares(t *testing.T, dataDir string) bool {
	partial, empty := spoolContents(t, dataDir)
	return len(partial) == 0 && empty <= cache.SpareSpoolFiles
}

func cachedBlobs(t *testing.T, dataDir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	root := filepath.Join(dataDir, "cache", "blobs")
	err := filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if info.Name() == "data" {
			rel, _ := filepath.Rel(root, path)
			parts := strings.Split(rel, string(filepath.Separator))
			out[parts[0]+":"+parts[2]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
