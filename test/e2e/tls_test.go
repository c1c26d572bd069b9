package e2e

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/harness"
)

func TestServesTLS(t *testing.T) {
	up := startUpstream(t)
	img := ociImage(t, 1024)
	want := up.Push(t, "team/app", "1.0", img)
	dir := t.TempDir()
	cert, key, pool := harness.WriteLoopbackCert(t, dir)
	cfg := filepath.Join(dir, "portcullis.yaml")
	os.WriteFile(cfg, []byte("default_upstream: up.test\nupstreams: [{name: up.test, url: "+up.URL()+"}]\ntls: {cert_file: "+cert+", key_file: "+key+"}\n"), 0o600)
	port := harness.FreePort(t)
	addr := "127.0.0.1:" + itoa(port)
	// The harness probes readiness over plain http; start it by hand.
	proc, err := harness.StartProcess(harness.BuildPortcullis(t), []string{"serve", "--config", cfg, "--listen", addr, "--data", t.TempDir()}, nil, &harness.LogBuffer{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Stop(5 * time.Second) })
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
	var resp *http.Response
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err = c.Get("https://" + addr + "/v2/team/app/manifests/1.0")
		if err == nil || time.Now().After(deadline) || !strings.Contains(err.Error(), "refused") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want.String() || resp.TLS == nil {
		t.Fatalf("over TLS: %d %v", resp.StatusCode, resp.Header)
	}
	// Blobs too, over HTTP/2 (negotiated by ALPN), which has no sendfile path.
	for _, l := range layers(t, img) {
		resp, err := c.Get("https://" + addr + "/v2/team/app/blobs/" + l.String())
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || sha(body) != l.String() || resp.ProtoMajor != 2 {
			t.Fatalf("blob over TLS: %d %s %v", resp.StatusCode, resp.Proto, err)
		}
	}
}

func TestStaleIfUpstreamFails(t *testing.T) {
	up := startUpstream(t)
	pc := withConfig(t, up, `
default_upstream: up.test
upstreams: [{name: up.test, url: UPSTREAM_URL, tag_ttl: 1s, retries: -1}]
`)
	want := up.Push(t, "team/app", "1.0", ociImage(t, 1024))
	if r := do(t, "GET", pc.URL+"/v2/team/app/manifests/1.0"); r.status != 200 {
		t.Fatal(r.status)
	}
	time.Sleep(1100 * time.Millisecond)
	for _, status := range []int{http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		up.Fail("/manifests/1.0", status, 1, "")
		r := do(t, "GET", pc.URL+"/v2/team/app/manifests/1.0")
		if r.status != 200 || r.header.Get("Docker-Content-Digest") != want.String() || r.header.Get("Portcullis-Cache") != "stale" {
			t.Fatalf("upstream %d: got %d %v", status, r.status, r.header)
		}
	}
	// A client with an Accept set never seen before still gets the last
	// known manifest, since it accepts its media type.
	up.Fail("/manifests/1.0", http.StatusServiceUnavailable, 1, "")
	r := do(t, "GET", pc.URL+"/v2/team/app/manifests/1.0", "Accept", "application/vnd.oci.image.manifest.v1+json")
	if r.status != 200 || r.header.Get("Docker-Content-Digest") != want.String() || r.header.Get("Portcullis-Cache") != "stale" {
		t.Fatalf("new Accept set, upstream failing: %d %v", r.status, r.header)
	}
	// One that does not accept it gets the error.
	up.Fail("/manifests/1.0", http.StatusServiceUnavailable, 1, "")
	r = do(t, "GET", pc.URL+"/v2/team/app/manifests/1.0", "Accept", "application/vnd.docker.distribution.manifest.v2+json")
	if msg := wantError(t, r, http.StatusBadGateway, "UNAVAILABLE"); strings.Contains(msg, "127.0.0.1") {
		t.Errorf("client error names the upstream's address: %q", msg)
	}
	// A real answer (404: the tag is gone) is not papered over.
	up.Fail("/manifests/1.0", http.StatusNotFound, 1, "")
	wantError(t, do(t, "GET", pc.URL+"/v2/team/app/manifests/1.0"), http.StatusNotFound, "MANIFEST_UNKNOWN")
}
