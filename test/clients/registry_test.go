package clients

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// seenRequest is what the test registry records about each request.
type seenRequest struct {
	Method, Path, RawQuery string
	Accept                 []string
	UserAgent              string
}

func (s seenRequest) String() string {
	q := ""
	if s.RawQuery != "" {
		q = "?" + s.RawQuery
	}
	return s.Method + " " + s.Path + q
}

// testRegistry is go-containerregistry's in-memory registry on 127.0.0.1,
// recording every request it serves.
type testRegistry struct {
	URL  string // http://127.0.0.1:PORT
	Host string // 127.0.0.1:PORT

	mu   sync.Mutex
	seen []seenRequest
}

func startRegistry(t *testing.T) *testRegistry {
	t.Helper()
	r := &testRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, seenRequest{
			Method:    req.Method,
			Path:      req.URL.Path,
			RawQuery:  req.URL.RawQuery,
			Accept:    req.Header.Values("Accept"),
			UserAgent: req.UserAgent(),
		})
		r.mu.Unlock()
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// requests returns the requests seen so far whose User-Agent contains ua.
func (r *testRegistry) requests(ua string) []seenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []seenRequest
	for _, s := range r.seen {
		if strings.Contains(s.UserAgent, ua) {
			out = append(out, s)
		}
	}
	return out
}

// reset forgets the requests seen so far.
func (r *testRegistry) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = nil
}

// logRequests shows the requests with ua in the test log.
func (r *testRegistry) logRequests(t *testing.T, ua string) {
	t.Helper()
	var b strings.Builder
	for _, s := range r.requests(ua) {
		b.WriteString("  " + s.String() + "  Accept: " + strings.Join(s.Accept, " | ") + "\n")
	}
	t.Logf("requests from %s:\n%s", ua, b.String())
}

// saw reports whether a request with this method and path (query ignored)
// came from ua.
func (r *testRegistry) saw(ua, method, path string) bool {
	for _, s := range r.requests(ua) {
		if s.Method == method && s.Path == path {
			return true
		}
	}
	return false
}

// ociImage makes a small image with OCI media types, so clients that write
// OCI layouts keep its manifest (and digest) as it is.
func ociImage(t *testing.T, arch string) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for range 2 {
		l, err := random.Layer(2048, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// pushImage pushes a linux/amd64 OCI image to REGISTRY/repoTag.
func (r *testRegistry) pushImage(t *testing.T, repoTag string) v1.Image {
	t.Helper()
	img := ociImage(t, "amd64")
	ref, err := name.ParseReference(r.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return img
}

// multiArch is an OCI index with a linux/amd64 and a linux/arm64 image.
type multiArch struct {
	Index        v1.ImageIndex
	Amd64, Arm64 v1.Image
}

// pushIndex pushes a two-platform OCI index to REGISTRY/repoTag.
func (r *testRegistry) pushIndex(t *testing.T, repoTag string) multiArch {
	t.Helper()
	m := multiArch{Amd64: ociImage(t, "amd64"), Arm64: ociImage(t, "arm64")}
	m.Index = mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: m.Amd64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: m.Arm64, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	ref, err := name.ParseReference(r.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, m.Index); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return m
}

// layoutChildren returns the manifest digests listed by the index that an
// OCI layout directory holds under tag.
func layoutChildren(t *testing.T, dir, tag string) []v1.Hash {
	t.Helper()
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("read OCI layout %s: %v", dir, err)
	}
	idx, err := root.ImageIndex(LayoutRoot(t, dir, tag).Digest)
	if err != nil {
		t.Fatalf("OCI layout %s: index %s: %v", dir, tag, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Hash
	for _, d := range im.Manifests {
		out = append(out, d.Digest)
	}
	return out
}

// digester is anything with a content digest: v1.Image, v1.ImageIndex.
type digester interface{ Digest() (v1.Hash, error) }

func digestOf(t *testing.T, d digester) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}
