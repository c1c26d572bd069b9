package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/proxy/cache"
	"github.com/portcullis/portcullis/test/harness"
)

func TestConcurrentColdPullsFetchOnce(t *testing.T) {
	s := start(t)
	img := ociImage(t, 8<<20)
	s.up.Push(t, "team/app", "1.0", img)
	blob := layers(t, img)[0]
	// Slow the upstream so the 20 requests really overlap the download.
	s.up.SetBlobDelay(blob, 20*time.Millisecond)
	s.up.ResetCounts()

	const clients = 20
	var wg sync.WaitGroup
	results := make([]response, clients)
	for i := range clients {
		wg.Go(func() { results[i] = do(t, "GET", s.pc.URL+"/v2/team/app/blobs/"+blob.String()) })
	}
	wg.Wait()
	sources := map[string]int{}
	for i, r := range results {
		if r.err != nil || r.status != 200 {
			t.Fatalf("client %d: %d %v", i, r.status, r.err)
		}
		if got := sha(r.body); got != blob.String() {
			t.Fatalf("client %d got bytes hashing to %s, want %s", i, got, blob)
		}
		sources[r.header.Get("Portcullis-Cache")]++
	}
	if n := s.up.Count("GET", "/blobs/"+blob.String()); n != 1 {
		t.Fatalf("upstream saw %d GETs of the blob, want exactly 1", n)
	}
	if sources["coalesced"] == 0 {
		t.Errorf("no request joined the download in progress: %v", sources)
	}
	t.Logf("cache results: %v", sources)
}

func TestUpstreamDownServesCacheAndFailsFastOtherwise(t *testing.T) {
	up := startUpstream(t)
	pc := withConfig(t, up, `
default_upstream: up.test
upstreams:
  - {name: up.test, url: UPSTREAM_URL, tag_ttl: 1s, retries: 1, timeout: 2s}
`)
	img := ociImage(t, 1<<20)
	up.Push(t, "team/app", "1.0", img)
	manifestDigest, _ := img.Digest()
	r := do(t, "GET", pc.URL+"/v2/team/app/manifests/1.0")
	if r.status != 200 || r.header.Get("Docker-Content-Digest") != manifestDigest.String() {
		t.Fatalf("cold manifest: %d %s", r.status, r.header.Get("Docker-Content-Digest"))
	}
	for _, l := range layers(t, img) {
		if r := do(t, "GET", pc.URL+"/v2/team/app/blobs/"+l.String()); r.status != 200 {
			t.Fatalf("cold blob: %d", r.status)
		}
	}
	up.Stop()
	time.Sleep(1100 * time.Millisecond) // past the tag TTL: the tag needs revalidation

	r = do(t, "GET", pc.URL+"/v2/team/app/manifests/1.0")
	if r.status != 200 || r.header.Get("Docker-Content-Digest") != manifestDigest.String() {
		t.Fatalf("stale manifest: %d %s %s", r.status, r.header.Get("Docker-Content-Digest"), r.body)
	}
	if r.header.Get("Portcullis-Cache") != "stale" || !strings.Contains(r.header.Get("Warning"), "110") {
		t.Errorf("stale answer not marked: Portcullis-Cache=%q Warning=%q", r.header.Get("Portcullis-Cache"), r.header.Get("Warning"))
	}
	for _, l := range layers(t, img) {
		if r := do(t, "GET", pc.URL+"/v2/team/app/blobs/"+l.String()); r.status != 200 || sha(r.body) != l.String() {
			t.Fatalf("cached blob with upstream down: %d", r.status)
		}
	}
	began := time.Now()
	r = do(t, "GET", pc.URL+"/v2/team/other/manifests/1.0")
	msg := wantError(t, r, http.StatusServiceUnavailable, "UNAVAILABLE")
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("uncached request took %v with the upstream down, want a fast failure", took)
	}
	if !strings.Contains(msg, "up.test") {
		t.Errorf("error does not name the upstream: %q", msg)
	}
}

func TestCorruptUpstreamBytesAreNeverCached(t *testing.T) {
	s := start(t)
	img := ociImage(t, 2<<20)
	s.up.Push(t, "team/app", "1.0", img)
	blob := layers(t, img)[0]
	s.up.CorruptBlob(blob)

	for attempt := range 2 {
		r := do(t, "GET", s.pc.URL+"/v2/team/app/blobs/"+blob.String())
		if r.err == nil && r.status == 200 && sha(r.body) == blob.String() {
			t.Fatalf("attempt %d: corrupt upstream bytes served as the blob", attempt)
		}
		if r.err == nil && r.status == 200 {
			t.Fatalf("attempt %d: a complete body that does not match the digest was delivered", attempt)
		}
	}
	if n := s.up.Count("GET", "/blobs/"+blob.String()); n != 2 {
		t.Errorf("upstream GETs = %d, want 2 (nothing was cached, so each request fetched again)", n)
	}
	if cached := cachedBlobs(t, s.pc.DataDir); cached[blob.String()] {
		t.Fatal("corrupt blob is in the cache")
	}
	if !s.pc.Logs.Contains("digest mismatch") {
		t.Error("log does not report the digest mismatch")
	}
}

func TestKillMidDownloadLeavesNothingUnverified(t *testing.T) {
	s := start(t)
	img := ociImage(t, 16<<20)
	s.up.Push(t, "team/app", "1.0", img)
	blob := layers(t, img)[0]
	s.up.SetBlobDelay(blob, 200*time.Millisecond) // ~3 s for 16 MiB

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.pc.URL+"/v2/team/app/blobs/"+blob.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	// Read some bytes so the download is surely under way, then crash.
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	s.pc.Kill()
	resp.Body.Close()
	partial, _ := spoolContents(t, s.pc.DataDir)
	if len(partial) == 0 {
		t.Fatal("expected a partial download in the spool after the crash")
	}
	if cachedBlobs(t, s.pc.DataDir)[blob.String()] {
		t.Fatal("partial blob visible under its digest after kill -9")
	}

	s.up.SetBlobDelay(blob, 0)
	s.pc.Restart(t)
	if left, empty := spoolContents(t, s.pc.DataDir); len(left) != 0 || empty > cache.SpareSpoolFiles {
		t.Errorf("spool not cleared on restart: partial downloads %v, %d empty files", left, empty)
	}
	r := do(t, "GET", s.pc.URL+"/v2/team/app/blobs/"+blob.String())
	if r.status != 200 || sha(r.body) != blob.String() {
		t.Fatalf("after restart: %d, digest %s", r.status, sha(r.body))
	}
	if r.header.Get("Portcullis-Cache") != "miss" {
		t.Errorf("after restart the blob came from %q, want a fresh download", r.header.Get("Portcullis-Cache"))
	}
	// Every committed file hashes to its name.
	root := filepath.Join(s.pc.DataDir, "cache", "blobs", "sha256")
	for d := range cachedBlobs(t, s.pc.DataDir) {
		hexd := strings.TrimPrefix(d, "sha256:")
		b, err := os.ReadFile(filepath.Join(root, hexd[:2], hexd, "data"))
		if err != nil {
			t.Fatal(err)
		}
		if sha(b) != d {
			t.Fatalf("cached %s holds bytes hashing to %s", d, sha(b))
		}
	}
}

func TestClientHangUpDoesNotAbortDownload(t *testing.T) {
	s := start(t)
	img := ociImage(t, 8<<20)
	s.up.Push(t, "team/app", "1.0", img)
	blob := layers(t, img)[0]
	s.up.SetBlobDelay(blob, 50*time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.pc.URL+"/v2/team/app/blobs/"+blob.String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	cancel() // the only client leaves
	resp.Body.Close()

	deadline := time.Now().Add(30 * time.Second)
	for !cachedBlobs(t, s.pc.DataDir)[blob.String()] {
		if time.Now().After(deadline) {
			t.Fatal("download abandoned by its only client never completed into the cache")
		}
		time.Sleep(100 * time.Millisecond)
	}
	r := do(t, "GET", s.pc.URL+"/v2/team/app/blobs/"+blob.String())
	if r.header.Get("Portcullis-Cache") != "hit" || sha(r.body) != blob.String() {
		t.Fatalf("second request: %q", r.header.Get("Portcullis-Cache"))
	}
	if n := s.up.Count("GET", "/blobs/"+blob.String()); n != 1 {
		t.Errorf("upstream GETs = %d, want 1", n)
	}
}

func TestLargeBlobStreamsBeforeDownloadEnds(t *testing.T) {
	s := start(t)
	_, blob := s.up.PushLargeBlobImage(t, "team/big", "1.0", 256<<20, 7)
	s.up.SetBlobDelay(blob, 5*time.Millisecond) // ≥ 1.3 s upstream for 256 MiB

	began := time.Now()
	resp, err := http.Get(s.pc.URL + "/v2/team/big/blobs/" + blob.String())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != 256<<20 {
		t.Fatalf("Content-Length %d", resp.ContentLength)
	}
	first := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatal(err)
	}
	firstByte := time.Since(began)
	h := sha256.New()
	h.Write(first)
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	total := time.Since(began)
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != blob.String() || n+1 != 256<<20 {
		t.Fatalf("streamed %d bytes hashing to %s", n+1, got)
	}
	if firstByte > total/4 {
		t.Errorf("first byte after %v of %v: the blob was not streamed while downloading", firstByte, total)
	}
	t.Logf("first byte %v, whole 256 MiB %v", firstByte, total)
}

func TestRangeHeadAndHeaders(t *testing.T) {
	s := start(t)
	img := ociImage(t, 1<<20)
	s.up.Push(t, "team/app", "1.0", img)
	blob := layers(t, img)[0]
	url := s.pc.URL + "/v2/team/app/blobs/" + blob.String()

	head := do(t, "HEAD", url) // uncached: answered from an upstream HEAD
	full := do(t, "GET", url)
	if head.status != 200 || full.status != 200 {
		t.Fatalf("HEAD %d, GET %d", head.status, full.status)
	}
	if head.header.Get("Content-Length") != full.header.Get("Content-Length") || head.header.Get("Docker-Content-Digest") != blob.String() || len(head.body) != 0 {
		t.Fatalf("HEAD is not GET without the body: %v vs %v", head.header, full.header)
	}
	for _, tc := range []struct {
		rng    string
		status int
		want   []byte
	}{
		{"bytes=0-9", 206, full.body[:10]},
		{"bytes=100-", 206, full.body[100:]},
		{"bytes=-5", 206, full.body[len(full.body)-5:]},
		{fmt.Sprintf("bytes=%d-", len(full.body)), 416, nil},
	} {
		r := do(t, "GET", url, "Range", tc.rng)
		if r.status != tc.status {
			t.Fatalf("%s: status %d, want %d", tc.rng, r.status, tc.status)
		}
		if tc.status == 206 {
			if !bytes.Equal(r.body, tc.want) || r.header.Get("Content-Range") == "" {
				t.Fatalf("%s: wrong bytes or no Content-Range", tc.rng)
			}
		}
	}

	m := do(t, "GET", s.pc.URL+"/v2/team/app/manifests/1.0", "Accept", "application/vnd.oci.image.manifest.v1+json")
	mh := do(t, "HEAD", s.pc.URL+"/v2/team/app/manifests/1.0", "Accept", "application/vnd.oci.image.manifest.v1+json")
	d, _ := img.Digest()
	for _, r := range []response{m, mh} {
		if r.status != 200 || r.header.Get("Docker-Content-Digest") != d.String() ||
			r.header.Get("Content-Type") != "application/vnd.oci.image.manifest.v1+json" ||
			r.header.Get("Content-Length") != fmt.Sprint(len(m.body)) {
			t.Fatalf("manifest headers: %d %v", r.status, r.header)
		}
	}
	if sha(m.body) != d.String() {
		t.Fatal("manifest bytes changed on the way through")
	}
}

func TestReadOnlyAndBadRequests(t *testing.T) {
	s := start(t)
	base := s.pc.URL + "/v2/team/app"
	digest := "sha256:" + strings.Repeat("a", 64)
	for _, tc := range []struct {
		method, url string
		status      int
		code        string
	}{
		{"PUT", base + "/manifests/1.0", 405, "UNSUPPORTED"},
		{"DELETE", base + "/manifests/" + digest, 405, "UNSUPPORTED"},
		{"POST", base + "/blobs/uploads/", 405, "UNSUPPORTED"},
		{"PATCH", base + "/blobs/uploads/abc", 405, "UNSUPPORTED"},
		{"DELETE", base + "/blobs/" + digest, 405, "UNSUPPORTED"},
		{"GET", s.pc.URL + "/v2/_catalog", 404, "UNSUPPORTED"},
		{"GET", s.pc.URL + "/v2/Team/App/manifests/1.0", 400, "NAME_INVALID"},
		{"GET", s.pc.URL + "/v2/team/..%2Fapp/manifests/1.0", 400, "NAME_INVALID"},
		{"GET", base + "/manifests/bad:tag", 400, "MANIFEST_INVALID"},
		{"GET", base + "/blobs/sha256:1234", 400, "DIGEST_INVALID"},
		{"GET", base + "/manifests/missing", 404, "MANIFEST_UNKNOWN"},
		{"GET", base + "/manifests/" + digest, 404, "MANIFEST_UNKNOWN"},
		{"GET", base + "/blobs/" + digest, 404, "BLOB_UNKNOWN"},
		{"HEAD", base + "/blobs/" + digest, 404, "BLOB_UNKNOWN"},
	} {
		t.Run(tc.method+" "+strings.TrimPrefix(tc.url, s.pc.URL), func(t *testing.T) {
			r := do(t, tc.method, tc.url)
			if tc.method == "HEAD" {
				if r.status != tc.status || len(r.body) != 0 {
					t.Fatalf("HEAD: %d with %d body bytes", r.status, len(r.body))
				}
				return
			}
			wantError(t, r, tc.status, tc.code)
		})
	}
}

func TestUnknownRegistryNeverDialed(t *testing.T) {
	s := start(t)
	// A registry that exists but is not configured: it must see no connection.
	other := startUpstream(t)
	for _, path := range []string{
		"/v2/" + other.Host() + "/team/app/manifests/1.0",
		"/v2/team/app/manifests/1.0?ns=" + other.Host(),
		"/v2/evil.example/team/app/blobs/sha256:" + strings.Repeat("b", 64),
	} {
		msg := wantError(t, do(t, "GET", s.pc.URL+path), 404, "NAME_UNKNOWN")
		if !strings.Contains(msg, "up.test") {
			t.Errorf("%s: message does not name the configured upstreams: %q", path, msg)
		}
	}
	if n := other.Connections(); n != 0 {
		t.Fatalf("unconfigured registry received %d connections", n)
	}
}

func TestRateLimitedUpstream(t *testing.T) {
	s := start(t)
	img := ociImage(t, 1024)
	s.up.Push(t, "team/app", "1.0", img)
	s.up.Fail("/manifests/", http.StatusTooManyRequests, 1, "120")
	r := do(t, "GET", s.pc.URL+"/v2/team/app/manifests/1.0")
	wantError(t, r, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	if r.header.Get("Retry-After") != "120" {
		t.Errorf("Retry-After %q, want 120 passed on", r.header.Get("Retry-After"))
	}
	if n := s.up.Count("GET", "/manifests/"); n != 1 {
		t.Errorf("upstream manifest GETs = %d: a long Retry-After must not be retried here", n)
	}

	// A short Retry-After is waited out and the client never sees it.
	s.up.ResetCounts()
	s.up.Fail("/manifests/", http.StatusTooManyRequests, 1, "1")
	r = do(t, "GET", s.pc.URL+"/v2/team/app/manifests/1.0")
	if r.status != 200 {
		t.Fatalf("after a short Retry-After: %d %s", r.status, r.body)
	}
	if n := s.up.Count("GET", "/manifests/"); n != 2 {
		t.Errorf("upstream manifest GETs = %d, want 2 (one 429, one retry)", n)
	}
}

func TestTagTTLRevalidatesAndFollowsMovedTags(t *testing.T) {
	up := startUpstream(t)
	pc := withConfig(t, up, `
default_upstream: up.test
upstreams:
  - {name: up.test, url: UPSTREAM_URL, tag_ttl: 1s}
`)
	first, second := ociImage(t, 1024), ociImage(t, 1024)
	d1 := up.Push(t, "team/app", "latest", first)
	get := func() response { return do(t, "GET", pc.URL+"/v2/team/app/manifests/latest") }
	if r := get(); r.header.Get("Docker-Content-Digest") != d1.String() || r.header.Get("Portcullis-Cache") != "miss" {
		t.Fatalf("first: %v", r.header)
	}
	up.ResetCounts()
	for range 5 {
		if r := get(); r.header.Get("Portcullis-Cache") != "hit" {
			t.Fatalf("within TTL: %v", r.header)
		}
	}
	if n := up.Count("", "/manifests/"); n != 0 {
		t.Fatalf("upstream asked %d times within the TTL", n)
	}
	time.Sleep(1100 * time.Millisecond)
	if r := get(); r.header.Get("Portcullis-Cache") != "revalidated" || r.header.Get("Docker-Content-Digest") != d1.String() {
		t.Fatalf("after TTL: %v", r.header)
	}
	if n := up.Count("HEAD", "/manifests/latest"); n != 1 {
		t.Fatalf("revalidation HEADs = %d, want 1", n)
	}
	d2 := up.Push(t, "team/app", "latest", second)
	time.Sleep(1100 * time.Millisecond)
	if r := get(); r.header.Get("Docker-Content-Digest") != d2.String() {
		t.Fatalf("moved tag still served as %s, want %s", r.header.Get("Docker-Content-Digest"), d2)
	}
}

func TestEvictionKeepsCacheBounded(t *testing.T) {
	up := startUpstream(t)
	pc := withConfig(t, up, `
default_upstream: up.test
upstreams: [{name: up.test, url: UPSTREAM_URL}]
cache: {max_bytes: 7MiB}
`)
	var blobs []string
	for i := range 4 {
		img := testregistryImage(t, 2<<20)
		up.Push(t, "team/app", fmt.Sprint(i), img)
		blobs = append(blobs, layers(t, img)[0].String())
	}
	for _, b := range blobs {
		if r := do(t, "GET", pc.URL+"/v2/team/app/blobs/"+b); r.status != 200 {
			t.Fatal(r.status)
		}
		// A commit lands just after its response; wait for it so the
		// blobs are used, and committed, in order.
		for deadline := time.Now().Add(10 * time.Second); !cachedBlobs(t, pc.DataDir)[b] && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Commits (and the eviction they trigger) finish just after the
	// responses: wait, bounded, for the last one to land.
	cached := cachedBlobs(t, pc.DataDir)
	for deadline := time.Now().Add(10 * time.Second); !cached[blobs[3]] || cached[blobs[0]]; cached = cachedBlobs(t, pc.DataDir) {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if cached[blobs[0]] {
		t.Error("least recently used blob survived past max_bytes")
	}
	if !cached[blobs[3]] || !cached[blobs[2]] {
		t.Errorf("recent blobs evicted: %v", cached)
	}
	var total int64
	root := filepath.Join(pc.DataDir, "cache", "blobs")
	filepath.Walk(root, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			total += info.Size()
		}
		return nil
	})
	if total > 7<<20 {
		t.Errorf("cache holds %d bytes, bound is %d", total, 7<<20)
	}
}

func TestGracefulShutdown(t *testing.T) {
	s := start(t)
	if err := s.pc.Stop(); err != nil {
		t.Fatalf("SIGTERM did not end in a clean exit: %v", err)
	}
	if !s.pc.Logs.Contains("shutting down") {
		t.Error("no shutdown log line")
	}
}

func TestBadConfigurationFailsClearly(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("listen: 127.0.0.1:0\nupstream:\n  - name: x\n"), 0o600)
	out, err := runBinary(t, bin, "serve", "--config", path)
	if err == nil || !strings.Contains(out, "line 2") || !strings.Contains(out, "upstream") {
		t.Fatalf("bad config: err=%v output=%s", err, out)
	}
	out, err = runBinary(t, bin, "serve", "--upstream", "nonsense")
	if err == nil || !strings.Contains(out, "NAME=URL") {
		t.Fatalf("bad flag: err=%v output=%s", err, out)
	}
}
