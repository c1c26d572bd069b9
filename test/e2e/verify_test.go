package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/portcullis/portcullis/test/harness"
)

// A range of a blob being downloaded must not be cut from bytes nobody has
// verified yet: the client gets the whole blob (200), held back until the
// digest matched, or, for corrupt upstream bytes, a broken transfer.
func TestRangeDuringDownloadGetsOnlyVerifiedBytes(t *testing.T) {
	for _, corrupt := range []bool{false, true} {
		t.Run(fmt.Sprintf("corrupt=%v", corrupt), func(t *testing.T) {
			s := start(t)
			img := ociImage(t, 4<<20)
			s.up.Push(t, "team/app", "1.0", img)
			blob := layers(t, img)[0]
			s.up.SetBlobDelay(blob, 100*time.Millisecond) // ~0.4 s for 4 MiB
			if corrupt {
				s.up.CorruptBlob(blob)
			}
			r := do(t, "GET", s.pc.URL+"/v2/team/app/blobs/"+blob.String(), "Range", "bytes=0-9")
			if r.status == http.StatusPartialContent {
				t.Fatalf("206 with %d bytes cut from a download not verified yet", len(r.body))
			}
			if corrupt {
				if r.err == nil && r.status == 200 {
					t.Fatalf("a complete %d-byte body of corrupt upstream bytes was delivered", len(r.body))
				}
				return
			}
			if r.err != nil || r.status != 200 || sha(r.body) != blob.String() {
				t.Fatalf("range during download: %d, %d bytes hashing to %s, %v; want 200 with the whole blob", r.status, len(r.body), sha(r.body), r.err)
			}
			// Verified and committed now: ranges are served as asked.
			waitFor(t, func() bool { return cachedBlobs(t, s.pc.DataDir)[blob.String()] })
			r2 := do(t, "GET", s.pc.URL+"/v2/team/app/blobs/"+blob.String(), "Range", "bytes=0-9")
			if r2.status != http.StatusPartialContent || string(r2.body) != string(r.body[:10]) {
				t.Fatalf("range of the cached blob: %d, %d bytes", r2.status, len(r2.body))
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
	}
}

// hostileBlobUpstream answers every blob GET with an endless body (with a
// Content-Length of announce when it is not 0), stopping on its own only
// after limit bytes; sent counts what it wrote.
func hostileBlobUpstream(t *testing.T, announce, limit int64, sent *atomic.Int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			w.WriteHeader(http.StatusOK)
			return
		}
		if announce > 0 {
			w.Header().Set("Content-Length", fmt.Sprint(announce))
		}
		w.WriteHeader(http.StatusOK)
		for sent.Load() < limit {
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	})}
	go srv.Serve(ln) //nolint:errcheck // ErrServerClosed on Close
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestEndlessUpstreamBlobStopsAtMaxBlobSize(t *testing.T) {
	const maxBlob = 1 << 20
	for _, tc := range []struct {
		name     string
		announce int64
	}{
		{"no Content-Length", 0},
		{"Content-Length over the bound", 64 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent atomic.Int64
			url := hostileBlobUpstream(t, tc.announce, 256<<20, &sent)
			path := filepath.Join(t.TempDir(), "portcullis.yaml")
			os.WriteFile(path, []byte(fmt.Sprintf(`
default_upstream: evil.test
upstreams: [{name: evil.test, url: %q, retries: 0}]
cache: {max_blob_size: 1MiB}
`, url)), 0o600)
			pc := harness.StartPortcullis(t, harness.BuildPortcullis(t), "--config", path)
			blob := "sha256:" + strings.Repeat("ab", 32)
			r := do(t, "GET", pc.URL+"/v2/team/app/blobs/"+blob)
			if r.err == nil && r.status == 200 {
				t.Fatalf("endless blob answered 200 with %d bytes", len(r.body))
			}
			if tc.announce > 0 {
				wantError(t, r, http.StatusBadGateway, "UNAVAILABLE")
			} else if len(r.body) > maxBlob {
				t.Fatalf("client received %d bytes, bound %d", len(r.body), maxBlob)
			}
			// The upstream can run ahead by what the sockets buffer, never
			// by the whole 256 MiB it would send.
			t.Logf("upstream wrote %d bytes before portcullis stopped reading", sent.Load())
			if n := sent.Load(); n > 32<<20 {
				t.Fatalf("upstream sent %d bytes before portcullis stopped reading (bound %d)", n, maxBlob)
			}
			waitFor(t, func() bool { return spoolHoldsOnlySpares(t, pc.DataDir) })
			if c := cachedBlobs(t, pc.DataDir); len(c) != 0 {
				t.Fatalf("committed after an oversized download: %v", c)
			}
			// Logged once the download ended, just after the answer.
			waitFor(t, func() bool { return pc.Logs.Contains("cache.max_blob_size") })
		})
	}
}

func blobPath(dataDir string, d v1.Hash) string {
	return filepath.Join(dataDir, "cache", "blobs", d.Algorithm, d.Hex[:2], d.Hex, "data")
}

func flipFileByte(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// A cached blob or manifest changed on disk is never served as itself: the
// transfer breaks (or a range is refused), the file is evicted, an ERROR is
// logged, and the next request fetches a good copy. Short and empty files
// are what a power loss can leave, since a blob is not fsynced before it
// is committed (proxy/cache/ingest.go).
func TestDamagedCacheIsNeverServed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		restart  bool
		rng      string
		truncate int64 // cut the file to this many bytes instead of flipping one; -1: flip
	}{
		{name: "while running", truncate: -1},
		{name: "after restart", restart: true, truncate: -1},
		{name: "range after restart", restart: true, rng: "bytes=0-9", truncate: -1},
		{name: "short after restart", restart: true, truncate: 300 << 10},
		{name: "empty after restart", restart: true, truncate: 0},
		{name: "range of a short file after restart", restart: true, rng: "bytes=0-9", truncate: 300 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t)
			img := ociImage(t, 1<<20)
			s.up.Push(t, "team/app", "1.0", img)
			blob := layers(t, img)[0]
			url := s.pc.URL + "/v2/team/app/blobs/" + blob.String()
			if r := do(t, "GET", url); r.status != 200 {
				t.Fatal(r.status)
			}
			waitFor(t, func() bool { return cachedBlobs(t, s.pc.DataDir)[blob.String()] })
			if tc.restart {
				s.pc.Stop()
			}
			if tc.truncate >= 0 {
				if err := os.Truncate(blobPath(s.pc.DataDir, blob), tc.truncate); err != nil {
					t.Fatal(err)
				}
			} else {
				flipFileByte(t, blobPath(s.pc.DataDir, blob), 512<<10)
			}
			if tc.restart {
				s.pc.Restart(t)
			}
			var r response
			if tc.rng != "" {
				r = do(t, "GET", url, "Range", tc.rng)
				if r.status == http.StatusPartialContent {
					t.Fatal("range of a damaged cached blob answered 206")
				}
			} else {
				r = do(t, "GET", url)
				if r.err == nil && r.status == 200 {
					t.Fatalf("damaged cached blob delivered complete (%d bytes hashing to %s)", len(r.body), sha(r.body))
				}
			}
			waitFor(t, func() bool { return !cachedBlobs(t, s.pc.DataDir)[blob.String()] })
			if !s.pc.Logs.Contains(`"level":"ERROR","msg":"cached content is corrupt`) {
				t.Error("no ERROR log for the damaged blob")
			}
			r = do(t, "GET", url)
			if r.err != nil || r.status != 200 || sha(r.body) != blob.String() || r.header.Get("Portcullis-Cache") != "miss" {
				t.Fatalf("after eviction: %d %q %v, want a fresh verified download", r.status, r.header.Get("Portcullis-Cache"), r.err)
			}
		})
	}
}

func TestDamagedCachedManifestIsFetchedAgain(t *testing.T) {
	s := start(t)
	img := ociImage(t, 1024)
	d := s.up.Push(t, "team/app", "1.0", img)
	url := s.pc.URL + "/v2/team/app/manifests/" + d.String()
	accept := "application/vnd.oci.image.manifest.v1+json"
	if r := do(t, "GET", url, "Accept", accept); r.status != 200 {
		t.Fatal(r.status)
	}
	s.pc.Stop() // the in-memory copy goes; the file stays
	flipFileByte(t, blobPath(s.pc.DataDir, d), 10)
	s.up.ResetCounts()
	s.pc.Restart(t)
	r := do(t, "GET", url, "Accept", accept)
	if r.status != 200 || sha(r.body) != d.String() {
		t.Fatalf("damaged cached manifest: %d, bytes hashing to %s, want %s", r.status, sha(r.body), d)
	}
	// Fetched again, by this request and/or the start-up pass over stored
	// verdicts (they may race to it).
	if n := s.up.Count("GET", "/manifests/"+d.String()); n < 1 {
		t.Errorf("upstream manifest GETs = %d: the damaged copy was not replaced", n)
	}
	if !s.pc.Logs.Contains(`"level":"ERROR","msg":"cached content is corrupt`) {
		t.Error("no ERROR log for the damaged manifest")
	}
}

func TestCacheVerifyCommand(t *testing.T) {
	s := start(t)
	img := ociImage(t, 1<<20)
	s.up.Push(t, "team/app", "1.0", img)
	ls := layers(t, img)
	for _, l := range ls {
		if r := do(t, "GET", s.pc.URL+"/v2/team/app/blobs/"+l.String()); r.status != 200 {
			t.Fatal(r.status)
		}
	}
	waitFor(t, func() bool { c := cachedBlobs(t, s.pc.DataDir); return c[ls[0].String()] && c[ls[1].String()] })
	if err := s.pc.Stop(); err != nil {
		t.Fatal(err)
	}
	flipFileByte(t, blobPath(s.pc.DataDir, ls[0]), 1000)

	out, err := runBinary(t, s.bin, "cache", "verify", "--data", s.pc.DataDir)
	if err == nil {
		t.Fatalf("cache verify exited 0 with a damaged blob:\n%s", out)
	}
	if !strings.Contains(out, "checked 2, bad 1") || !strings.Contains(out, "BAD "+ls[0].String()) {
		t.Fatalf("cache verify output:\n%s", out)
	}
	c := cachedBlobs(t, s.pc.DataDir)
	if c[ls[0].String()] || !c[ls[1].String()] {
		t.Fatalf("after cache verify: %v; want the damaged blob gone, the good one kept", c)
	}
	if out, err := runBinary(t, s.bin, "cache", "verify", "--data", s.pc.DataDir); err != nil || !strings.Contains(out, "checked 1, bad 0") {
		t.Fatalf("second cache verify: %v\n%s", err, out)
	}

	s.pc.Restart(t)
	r := do(t, "GET", s.pc.URL+"/v2/team/app/blobs/"+ls[0].String())
	if r.err != nil || r.status != 200 || sha(r.body) != ls[0].String() || r.header.Get("Portcullis-Cache") != "miss" {
		t.Fatalf("pull after cache verify: %d %q %v", r.status, r.header.Get("Portcullis-Cache"), r.err)
	}
}
