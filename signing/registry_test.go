package signing

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// TestMain fences the tests off from any network: every Go HTTP client that
// honours the proxy environment (http.DefaultTransport and its clones, which
// is what Rekor's, TUF's and go-openapi's clients use) is pointed at a local
// recorder, and TUF's cache at an empty directory. After the run both must be
// untouched: verification never fetched trust material or looked up Rekor.
// Loopback requests (the test registry) are never proxied by Go.
func TestMain(m *testing.M) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	var escaped atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			escaped.Add(1)
			line, _ := bufio.NewReader(c).ReadString('\n')
			log.Printf("network request escaped the test: %q", strings.TrimSpace(line))
			c.Close()
		}
	}()
	proxy := "http://" + ln.Addr().String()
	tufRoot, err := os.MkdirTemp("", "signing-tuf-")
	if err != nil {
		log.Fatal(err)
	}
	for k, v := range map[string]string{
		"HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "http_proxy": proxy, "https_proxy": proxy,
		"NO_PROXY": "", "no_proxy": "", "TUF_ROOT": tufRoot,
	} {
		os.Setenv(k, v)
	}

	code := m.Run()

	ln.Close()
	entries, _ := os.ReadDir(tufRoot)
	os.RemoveAll(tufRoot)
	if n := escaped.Load(); n > 0 && code == 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d network request(s) left the machine\n", n)
		code = 1
	}
	if len(entries) > 0 && code == 0 {
		fmt.Fprintf(os.Stderr, "FAIL: TUF cache %s was written: %v\n", filepath.Base(tufRoot), entries)
		code = 1
	}
	os.Exit(code)
}

// testRegistry is a real OCI registry on loopback with the referrers API.
type testRegistry struct {
	host string
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	srv := httptest.NewServer(registry.New(
		registry.WithReferrersSupport(true),
		registry.Logger(log.New(io.Discard, "", 0)),
	))
	t.Cleanup(srv.Close)
	return &testRegistry{host: strings.TrimPrefix(srv.URL, "http://")}
}

// ref parses repo:tag or repo@digest on the test registry.
func (r *testRegistry) ref(t *testing.T, repo, reference string) name.Reference {
	t.Helper()
	sep := ":"
	if strings.HasPrefix(reference, "sha256:") {
		sep = "@"
	}
	ref, err := name.ParseReference(r.host + "/" + repo + sep + reference)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

func (r *testRegistry) digestRef(t *testing.T, repo, digest string) name.Digest {
	t.Helper()
	return r.ref(t, repo, digest).(name.Digest)
}

// pushImage pushes a random image and returns its digest.
func (r *testRegistry) pushImage(t *testing.T, repo string) string {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r.ref(t, repo, d.String()), img); err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// pushIndex pushes a two-platform index and returns its digest and its children.
func (r *testRegistry) pushIndex(t *testing.T, repo string) (string, []string) {
	t.Helper()
	var adds []mutate.IndexAddendum
	var children []string
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		children = append(children, d.String())
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "linux", Architecture: arch},
		}})
	}
	idx := mutate.AppendManifests(empty.Index, adds...)
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r.ref(t, repo, d.String()), idx); err != nil {
		t.Fatal(err)
	}
	return d.String(), children
}

// client is the Registry the tests hand to Verify: go-containerregistry's
// remote against the loopback registry, as the proxy's upstream client would.
func (r *testRegistry) client() Registry { return ggcrRegistry{host: r.host} }

type ggcrRegistry struct{ host string }

func (g ggcrRegistry) parse(repo, reference string) (name.Reference, error) {
	if strings.HasPrefix(reference, "sha256:") {
		return name.NewDigest(g.host + "/" + repo + "@" + reference)
	}
	return name.NewTag(g.host + "/" + repo + ":" + reference)
}

func (g ggcrRegistry) Manifest(ctx context.Context, repo, reference string) ([]byte, string, string, error) {
	ref, err := g.parse(repo, reference)
	if err != nil {
		return nil, "", "", err
	}
	desc, err := remote.Get(ref, remote.WithContext(ctx))
	if err != nil {
		return nil, "", "", notFound(err)
	}
	return desc.Manifest, string(desc.MediaType), desc.Digest.String(), nil
}

func (g ggcrRegistry) Blob(ctx context.Context, repo, digest string) (io.ReadCloser, error) {
	ref, err := name.NewDigest(g.host + "/" + repo + "@" + digest)
	if err != nil {
		return nil, err
	}
	l, err := remote.Layer(ref, remote.WithContext(ctx))
	if err != nil {
		return nil, notFound(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, notFound(err)
	}
	return rc, nil
}

// Referrers lists without client-side filtering, like a registry that ignores
// the artifactType query: signing must filter by itself.
func (g ggcrRegistry) Referrers(ctx context.Context, repo, digest, _ string) ([]byte, error) {
	ref, err := name.NewDigest(g.host + "/" + repo + "@" + digest)
	if err != nil {
		return nil, err
	}
	idx, err := remote.Referrers(ref, remote.WithContext(ctx))
	if err != nil {
		return nil, notFound(err)
	}
	return idx.RawManifest()
}

func notFound(err error) error {
	var te *transport.Error
	if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}

// failingRegistry answers every call with a transient failure.
type failingRegistry struct{}

var errUpstreamDown = errors.New("upstream unavailable")

func (failingRegistry) Manifest(context.Context, string, string) ([]byte, string, string, error) {
	return nil, "", "", errUpstreamDown
}
func (failingRegistry) Blob(context.Context, string, string) (io.ReadCloser, error) {
	return nil, errUpstreamDown
}
func (failingRegistry) Referrers(context.Context, string, string, string) ([]byte, error) {
	return nil, errUpstreamDown
}
