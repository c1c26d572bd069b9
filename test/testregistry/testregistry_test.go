package testregistry

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// clientOpts gives a test its own bounded client, with ggcr's retries off so
// injected failures surface instead of being slept through.
func clientOpts(t *testing.T, auth authn.Authenticator) []remote.Option {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(func() {
		cancel()
		tr.CloseIdleConnections()
	})
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(tr),
		remote.WithAuth(auth),
		remote.WithRetryBackoff(remote.Backoff{Steps: 1}),
	}
}

func mustRef(t *testing.T, r *Registry, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(r.Host()+"/"+s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// httpDo sends one raw request with a bounded client and returns the response
// with its body read.
func httpDo(t *testing.T, method, url string, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, body
}

func layerDigests(t *testing.T, img v1.Image) []v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var ds []v1.Hash
	for _, l := range m.Layers {
		ds = append(ds, l.Digest)
	}
	return ds
}

func TestPushAndPullBothManifestTypes(t *testing.T) {
	r := Start(t)
	cases := map[types.MediaType]struct{ layer, config types.MediaType }{
		types.DockerManifestSchema2: {types.DockerLayer, types.DockerConfigJSON},
		types.OCIManifestSchema1:    {types.OCILayer, types.OCIConfigJSON},
	}
	for mt, want := range cases {
		img := RandomImage(t, 2, 8192, mt)
		d := r.Push(t, "library/app", "v1", img)
		r.ResetCounts()

		got, err := remote.Image(mustRef(t, r, "library/app:v1"), clientOpts(t, authn.Anonymous)...)
		if err != nil {
			t.Fatalf("%s: pull: %v", mt, err)
		}
		if err := validate.Image(got); err != nil {
			t.Fatalf("%s: pulled image invalid: %v", mt, err)
		}
		m, err := got.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if gd, _ := got.Digest(); gd != d {
			t.Errorf("%s: pulled digest %s, pushed %s", mt, gd, d)
		}
		if m.MediaType != mt || m.Config.MediaType != want.config || len(m.Layers) != 2 {
			t.Fatalf("%s: manifest %s, config %s, %d layers", mt, m.MediaType, m.Config.MediaType, len(m.Layers))
		}
		for _, l := range m.Layers {
			if l.MediaType != want.layer {
				t.Errorf("%s: layer media type %s, want %s", mt, l.MediaType, want.layer)
			}
		}
		cf, err := got.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != "linux" || cf.Architecture != "amd64" || len(cf.RootFS.DiffIDs) != 2 {
			t.Errorf("%s: config %s/%s with %d diff_ids", mt, cf.OS, cf.Architecture, len(cf.RootFS.DiffIDs))
		}
		if n := r.Count(http.MethodGet, "/manifests/v1$"); n != 1 {
			t.Errorf("%s: %d manifest GETs, want 1", mt, n)
		}
		if n := r.Count("", "/blobs/"+m.Layers[0].Digest.String()); n == 0 {
			t.Errorf("%s: layer blob never requested", mt)
		}
		if r.Connections() == 0 {
			t.Errorf("%s: no connections counted", mt)
		}
		r.ResetCounts()
		if r.Count("", "") != 0 || r.Connections() != 0 {
			t.Errorf("%s: counts survive ResetCounts", mt)
		}
	}
}

func TestTokenAuthFlow(t *testing.T) {
	r := Start(t, WithTokenAuth("alice", "s3cret"))
	d := r.Push(t, "private/app", "v1", RandomImage(t, 1, 1024, types.OCIManifestSchema1))
	r.ResetCounts()
	ref := mustRef(t, r, "private/app:v1")

	resp, _ := httpDo(t, http.MethodGet, r.URL()+"/v2/", nil)
	challenge := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != http.StatusUnauthorized ||
		!strings.HasPrefix(challenge, `Bearer realm="http://localhost:`) ||
		!strings.Contains(challenge, `service="testregistry"`) || strings.Contains(challenge, "scope=") {
		t.Fatalf("GET /v2/: %d %q", resp.StatusCode, challenge)
	}
	if strings.Contains(challenge, r.Host()) {
		t.Errorf("realm %q is on the registry's own host:port, want a separate token server", challenge)
	}
	resp, _ = httpDo(t, http.MethodGet, r.URL()+"/v2/private/app/manifests/v1", nil)
	if c := resp.Header.Get("WWW-Authenticate"); !strings.Contains(c, `scope="repository:private/app:pull"`) {
		t.Errorf("manifest challenge %q lacks the pull scope", c)
	}

	desc, err := remote.Get(ref, clientOpts(t, &authn.Basic{Username: "alice", Password: "s3cret"})...)
	if err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	if desc.Digest != d {
		t.Errorf("pulled %s, pushed %s", desc.Digest, d)
	}
	if r.TokenRequests() == 0 {
		t.Error("no token requests counted")
	}
	if n := r.Count("", "/token"); n != 0 {
		t.Errorf("token requests leaked into the registry's counts: %d", n)
	}

	for name, auth := range map[string]authn.Authenticator{
		"anonymous":      authn.Anonymous,
		"wrong password": &authn.Basic{Username: "alice", Password: "nope"},
	} {
		_, err := remote.Get(ref, clientOpts(t, auth)...)
		var terr *transport.Error
		if !errors.As(err, &terr) || terr.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s pull: got %v, want a 401", name, err)
		}
	}

	// A pull token reads its repository but neither writes it nor reads others.
	tok := fetchToken(t, r, "alice", "s3cret", "repository:private/app:pull")
	bearer := http.Header{"Authorization": {"Bearer " + tok}}
	if resp, _ := httpDo(t, http.MethodGet, r.URL()+"/v2/private/app/manifests/v1", bearer); resp.StatusCode != http.StatusOK {
		t.Errorf("GET with pull token: %d", resp.StatusCode)
	}
	resp, _ = httpDo(t, http.MethodPost, r.URL()+"/v2/private/app/blobs/uploads/", bearer)
	if c := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(c, `scope="repository:private/app:pull,push"`) || !strings.Contains(c, `error="insufficient_scope"`) {
		t.Errorf("POST with pull token: %d %q", resp.StatusCode, c)
	}
	if resp, _ := httpDo(t, http.MethodGet, r.URL()+"/v2/other/manifests/v1", bearer); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET of another repository with a pull token: %d", resp.StatusCode)
	}
}

// fetchToken runs the token request by hand and checks the response shape.
func fetchToken(t *testing.T, r *Registry, user, pass string, scopes ...string) string {
	t.Helper()
	resp, _ := httpDo(t, http.MethodGet, r.URL()+"/v2/", nil)
	c := resp.Header.Get("WWW-Authenticate")
	_, realm, _ := strings.Cut(c, `realm="`)
	realm, _, _ = strings.Cut(realm, `"`)
	q := "?service=testregistry"
	for _, s := range scopes {
		q += "&scope=" + s
	}
	hdr := http.Header{}
	if user != "" {
		req, _ := http.NewRequest(http.MethodGet, realm, nil)
		req.SetBasicAuth(user, pass)
		hdr = req.Header
	}
	resp, body := httpDo(t, http.MethodGet, realm+q, hdr)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token request: %d %s", resp.StatusCode, body)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		IssuedAt    string `json:"issued_at"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		t.Fatalf("token response %s: %v", body, err)
	}
	if _, err := time.Parse(time.RFC3339, tr.IssuedAt); err != nil || tr.Token == "" ||
		tr.Token != tr.AccessToken || tr.ExpiresIn < 1 {
		t.Fatalf("token response %s", body)
	}
	return tr.Token
}

func TestTokenExpiry(t *testing.T) {
	const ttl = 400 * time.Millisecond
	r := Start(t, WithTokenAuth("", ""), WithTokenTTL(ttl))
	r.Push(t, "exp/app", "v1", RandomImage(t, 1, 1024, types.OCIManifestSchema1))
	url := r.URL() + "/v2/exp/app/manifests/v1"

	tok := fetchToken(t, r, "", "", "repository:exp/app:pull")
	bearer := http.Header{"Authorization": {"Bearer " + tok}}
	if resp, _ := httpDo(t, http.MethodGet, url, bearer); resp.StatusCode != http.StatusOK {
		t.Fatalf("fresh token: %d", resp.StatusCode)
	}
	time.Sleep(ttl + 100*time.Millisecond)
	resp, _ := httpDo(t, http.MethodGet, url, bearer)
	if c := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(c, "realm=") || !strings.Contains(c, `error="invalid_token"`) {
		t.Fatalf("expired token: %d %q", resp.StatusCode, c)
	}

	// A client that keeps its transport answers the new challenge by itself.
	puller, err := remote.NewPuller(clientOpts(t, authn.Anonymous)...)
	if err != nil {
		t.Fatal(err)
	}
	ref := mustRef(t, r, "exp/app:v1")
	if _, err := remote.Get(ref, remote.Reuse(puller)); err != nil {
		t.Fatal(err)
	}
	before := r.TokenRequests()
	time.Sleep(ttl + 100*time.Millisecond)
	if _, err := remote.Get(ref, remote.Reuse(puller)); err != nil {
		t.Fatalf("pull after expiry: %v", err)
	}
	if r.TokenRequests() != before+1 {
		t.Errorf("token requests %d -> %d, want one refresh", before, r.TokenRequests())
	}
}

func TestStopRestart(t *testing.T) {
	r := Start(t)
	d := r.Push(t, "sr/app", "v1", RandomImage(t, 1, 1024, types.DockerManifestSchema2))
	host := r.Host()
	ref := mustRef(t, r, "sr/app:v1")

	r.Stop()
	r.Stop() // idempotent
	_, err := remote.Get(ref, clientOpts(t, authn.Anonymous)...)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("pull while stopped: got %v, want connection refused", err)
	}
	r.Restart()
	if r.Host() != host {
		t.Fatalf("restarted on %s, was %s", r.Host(), host)
	}
	desc, err := remote.Get(ref, clientOpts(t, authn.Anonymous)...)
	if err != nil || desc.Digest != d {
		t.Fatalf("pull after restart: %v (digest %v, want %s)", err, desc, d)
	}
}

func TestSlowBlobAndStopMidDownload(t *testing.T) {
	r := Start(t)
	img := RandomImage(t, 1, 3<<20, types.OCIManifestSchema1)
	r.Push(t, "slow/app", "v1", img)
	blob := layerDigests(t, img)[0]
	blobURL := r.URL() + "/v2/slow/app/blobs/" + blob.String()
	const perMiB = 200 * time.Millisecond
	r.SetBlobDelay(blob, perMiB)

	// ~3 MiB: pauses after the first and second MiB, not after the last.
	start := time.Now()
	resp, body := httpDo(t, http.MethodGet, blobURL, nil)
	elapsed := time.Since(start)
	if resp.StatusCode != http.StatusOK || fmt.Sprintf("sha256:%x", sha256.Sum256(body)) != blob.String() {
		t.Fatalf("slow GET: %d, %d bytes", resp.StatusCode, len(body))
	}
	// Only the lower bound: the pauses happened. How much longer a loaded
	// machine takes is not this test's business (no timed assertions).
	if elapsed < 2*perMiB {
		t.Errorf("slow GET took %v, want at least %v", elapsed, 2*perMiB)
	}

	// Stopping the registry cuts a download in progress.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, blobURL, nil)
	c := &http.Client{Timeout: 30 * time.Second}
	stream, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if _, err := io.ReadFull(stream.Body, make([]byte, 512<<10)); err != nil {
		t.Fatalf("first bytes: %v", err)
	}
	time.AfterFunc(50*time.Millisecond, r.Stop)
	start = time.Now()
	n, err := io.Copy(io.Discard, stream.Body)
	if err == nil {
		t.Fatalf("download finished (%d more bytes) despite Stop", n)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("download took %v to fail after Stop", time.Since(start))
	}
	r.Restart()
	r.SetBlobDelay(blob, 0)
	if resp, _ := httpDo(t, http.MethodGet, blobURL, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("after restart: %d", resp.StatusCode)
	}
}

func TestCorruptBlob(t *testing.T) {
	r := Start(t)
	img := RandomImage(t, 1, 64<<10, types.OCIManifestSchema1)
	r.Push(t, "bad/app", "v1", img)
	blob := layerDigests(t, img)[0]
	size, _ := layerSize(t, img)
	r.CorruptBlob(blob)

	url := r.URL() + "/v2/bad/app/blobs/" + blob.String()
	resp, body := httpDo(t, http.MethodGet, url, nil)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != size ||
		resp.Header.Get("Docker-Content-Digest") != blob.String() || int64(len(body)) != size {
		t.Fatalf("corrupt GET: %d, Content-Length %d, digest %q, %d bytes; want %d bytes of %s",
			resp.StatusCode, resp.ContentLength, resp.Header.Get("Docker-Content-Digest"), len(body), size, blob)
	}
	if got := fmt.Sprintf("sha256:%x", sha256.Sum256(body)); got == blob.String() {
		t.Fatal("corrupt blob still hashes to its digest")
	}
	if resp, _ := httpDo(t, http.MethodHead, url, nil); resp.StatusCode != http.StatusOK || resp.ContentLength != size {
		t.Errorf("HEAD: %d, %d", resp.StatusCode, resp.ContentLength)
	}

	// A verifying client notices.
	l, err := remote.Layer(mustRef(t, r, "bad/app@"+blob.String()).(name.Digest), clientOpts(t, authn.Anonymous)...)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err == nil || !strings.Contains(err.Error(), blob.Hex) {
		t.Errorf("reading corrupt layer: %v, want a digest mismatch", err)
	}
}

func layerSize(t *testing.T, img v1.Image) (int64, v1.Hash) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	return m.Layers[0].Size, m.Layers[0].Digest
}

func TestFail(t *testing.T) {
	r := Start(t)
	img := RandomImage(t, 1, 1024, types.OCIManifestSchema1)
	r.Push(t, "flaky/app", "v1", img)
	r.ResetCounts()
	manifestURL := r.URL() + "/v2/flaky/app/manifests/v1"

	r.Fail("/manifests/", http.StatusTooManyRequests, 2, "7")
	for i := range 2 {
		resp, body := httpDo(t, http.MethodGet, manifestURL, nil)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "7" ||
			!strings.Contains(string(body), `"code":"TOOMANYREQUESTS"`) {
			t.Fatalf("request %d: %d Retry-After=%q %s", i, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	if resp, _ := httpDo(t, http.MethodGet, manifestURL, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the failures ran out: %d", resp.StatusCode)
	}
	if n := r.Count(http.MethodGet, "/manifests/v1$"); n != 3 {
		t.Errorf("counted %d manifest GETs, want 3", n)
	}

	// ggcr reads the injected error like a real registry's.
	r.Fail("/blobs/", http.StatusServiceUnavailable, 1, "")
	// ggcr may resolve the layer lazily, so the request can come from either call.
	l, err := remote.Layer(mustRef(t, r, "flaky/app@"+layerDigests(t, img)[0].String()).(name.Digest),
		clientOpts(t, authn.Anonymous)...)
	if err == nil {
		var rc io.ReadCloser
		if rc, err = l.Compressed(); err == nil {
			rc.Close()
		}
	}
	var terr *transport.Error
	if !errors.As(err, &terr) || terr.StatusCode != http.StatusServiceUnavailable ||
		len(terr.Errors) != 1 || terr.Errors[0].Code != transport.UnknownErrorCode {
		t.Errorf("injected 503: %v", err)
	}
}

// peakRSS reads VmHWM, Linux's high-water mark of resident memory; 0 elsewhere.
