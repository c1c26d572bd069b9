package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

// cdn is a loopback server standing in for a registry's blob CDN: it serves
// from the test registry and records the Authorization header of each
// request it gets.
type cdn struct {
	*httptest.Server
	mu    sync.Mutex
	auths []string
}

func startCDN(t *testing.T, reg *testregistry.Registry) *cdn {
	t.Helper()
	target, _ := url.Parse(reg.URL())
	c := &cdn{}
	rp := httputil.NewSingleHostReverseProxy(target)
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.auths = append(c.auths, r.Header.Get("Authorization"))
		c.mu.Unlock()
		r.Header.Del("Authorization")
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *cdn) requests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.auths...)
}

// hostileFront fronts the test registry the way a hostile (or merely
// CDN-backed) upstream would: it wants basic auth, sends blob GETs to the
// CDN, redirects the tag "moved" and answers the tag "html" with a web page.
func hostileFront(reg *testregistry.Registry, cdnURL string) http.Handler {
	target, _ := url.Parse(reg.URL())
	rp := httputil.NewSingleHostReverseProxy(target)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "bot" || p != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="front"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "/manifests/moved"):
			http.Redirect(w, r, cdnURL+strings.TrimSuffix(r.URL.Path, "moved")+"1.0", http.StatusTemporaryRedirect)
			return
		case strings.HasSuffix(r.URL.Path, "/manifests/html"):
			body := []byte("<html><body>instance metadata</body></html>")
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Docker-Content-Digest", sha(body))
			w.Write(body)
			return
		case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/"):
			http.Redirect(w, r, cdnURL+r.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		r.Header.Del("Authorization")
		rp.ServeHTTP(w, r)
	})
}

// startBehind runs portcullis with front as upstream up.test, logging in
// with basic auth.
func startBehind(t *testing.T, frontURL string, insecure bool) *harness.Portcullis {
	t.Helper()
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	if err := os.WriteFile(pw, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := "default_upstream: up.test\nupstreams:\n  - name: up.test\n    url: " + frontURL +
		"\n    username: bot\n    password_file: " + pw + "\n"
	if insecure {
		cfg += "    insecure: true\n"
	}
	path := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return harness.StartPortcullis(t, harness.BuildPortcullis(t), "--config", path)
}

// An upstream on loopback may send blobs to a CDN on loopback (another
// port): a real client pulls the whole image, and the upstream's
// credentials never reach the CDN, another origin.
func TestBlobRedirectToLoopbackCDNFollowedWithoutCredentials(t *testing.T) {
	reg := startUpstream(t)
	img := ociImage(t, 4096)
	reg.Push(t, "team/app", "1.0", img)
	c := startCDN(t, reg)
	front := httptest.NewServer(hostileFront(reg, c.URL))
	defer front.Close()
	pc := startBehind(t, front.URL, false)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "tool", "crane", "pull", "--insecure",
		strings.TrimPrefix(pc.URL, "http://")+"/team/app:1.0", filepath.Join(t.TempDir(), "img.tar")).CombinedOutput()
	if err != nil {
		t.Fatalf("crane pull through a CDN redirect: %v\n%s", err, out)
	}
	auths := c.requests()
	if len(auths) < len(layers(t, img)) {
		t.Fatalf("CDN got %d requests, want at least one per layer (%d)", len(auths), len(layers(t, img)))
	}
	for _, a := range auths {
		if a != "" {
			t.Fatalf("the upstream's Authorization %q reached the CDN on another port", a)
		}
	}
}

// An https upstream that sends a blob to plain http is refused: the client
// gets an OCI error, the http target is never asked, nothing is cached. A
// manifest redirect, and a manifest that is a web page, are refused too.
func TestHostileUpstreamAnswersRefused(t *testing.T) {
	reg := startUpstream(t)
	img := ociImage(t, 4096)
	reg.Push(t, "team/app", "1.0", img)
	c := startCDN(t, reg)
	front := httptest.NewTLSServer(hostileFront(reg, c.URL))
	defer front.Close()
	pc := startBehind(t, front.URL, true)

	// The manifest itself is served directly: the pull starts normally.
	if r := do(t, "GET", pc.URL+"/v2/team/app/manifests/1.0", "Accept", "application/vnd.oci.image.manifest.v1+json"); r.status != http.StatusOK {
		t.Fatalf("manifest: %d %s", r.status, r.body)
	}
	layer := layers(t, img)[0]
	r := do(t, "GET", pc.URL+"/v2/team/app/blobs/"+layer.String())
	msg := wantError(t, r, http.StatusBadGateway, "UNAVAILABLE")
	if strings.Contains(msg, "127.0.0.1") {
		t.Errorf("the error names the redirect target: %q", msg)
	}
	if n := len(c.requests()); n != 0 {
		t.Fatalf("https→http redirect followed: the http target got %d requests", n)
	}
	if cachedBlobs(t, pc.DataDir)[layer.String()] {
		t.Fatal("the blob was cached")
	}

	r = do(t, "GET", pc.URL+"/v2/team/app/manifests/moved")
	wantError(t, r, http.StatusBadGateway, "UNAVAILABLE")
	if n := len(c.requests()); n != 0 {
		t.Fatalf("a manifest redirect was followed (%d requests)", n)
	}

	html := []byte("<html><body>instance metadata</body></html>")
	r = do(t, "GET", pc.URL+"/v2/team/app/manifests/html")
	wantError(t, r, http.StatusBadGateway, "MANIFEST_INVALID")
	if cachedBlobs(t, pc.DataDir)[sha(html)] {
		t.Fatal("the web page was cached as a manifest")
	}
	// Nothing was remembered for the tag either: it is refused again, not
	// served from a tag cache.
	r = do(t, "GET", pc.URL+"/v2/team/app/manifests/html")
	wantError(t, r, http.StatusBadGateway, "MANIFEST_INVALID")
}
