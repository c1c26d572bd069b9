package proxy_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/portcullis/portcullis/store"
)

// With blob links required (auth), a blob cached for one repository is not
// served under another the upstream does not confirm holds it: knowing a
// digest is not access.
func TestCachedBlobNeedsTheRepositoryToHoldIt(t *testing.T) {
	for _, tc := range []struct {
		name     string
		required bool
		other    int // status of the layer under a repository that lacks it
	}{
		{"links required", true, http.StatusNotFound},
		{"links not required", false, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []envOption
			if tc.required {
				opts = append(opts, withRequiredBlobLinks())
			}
			e := newEnv(t, opts...)
			var heads atomic.Int64
			e.intercept = func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.Contains(r.URL.Path, "/other/") {
					return false
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				io.WriteString(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"not in this repository"}]}`)
				return true
			}
			e.onUpstream = func(r *http.Request) {
				if r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/") {
					heads.Add(1)
				}
			}
			img, err := random.Image(2048, 1)
			if err != nil {
				t.Fatal(err)
			}
			e.push(t, "private/app:1.0", img)
			ls, _ := img.Layers()
			layer, _ := ls[0].Digest()
			get := func(repo string) int {
				resp, err := http.Get(e.proxy.URL + "/v2/" + repo + "/blobs/" + layer.String())
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			if got := get("private/app"); got != http.StatusOK {
				t.Fatalf("layer in its own repository: %d", got)
			}
			if got := get("other/app"); got != tc.other {
				t.Fatalf("cached layer under a repository that lacks it: %d, want %d", got, tc.other)
			}
			if !tc.required {
				return
			}
			// Confirmed once, then remembered.
			before := heads.Load()
			for range 3 {
				if got := get("private/app"); got != http.StatusOK {
					t.Fatalf("layer in its own repository again: %d", got)
				}
			}
			if heads.Load() != before {
				t.Fatalf("%d upstream HEADs for a confirmed blob", heads.Load()-before)
			}
		})
	}
}

// A download stops at the size the repository's manifest declared for the
// blob, not at cache.max_blob_size: an upstream that sends more (here, a
// body that never ends) fills no disk beyond it.
func TestDownloadStopsAtTheDeclaredSize(t *testing.T) {
	e := newEnv(t)
	img, err := random.Image(64<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	d := e.push(t, "team/app:1.0", img)
	ls, _ := img.Layers()
	layer, _ := ls[0].Digest()
	declared := int64(1024)
	if err := e.state.LinkImage(context.Background(), "up.test", "team/app", d.String(), []store.BlobRef{{Digest: layer.String(), Size: declared}}); err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	e.intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/blobs/"+layer.String()) || r.Method != http.MethodGet {
			return false
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		chunk := make([]byte, 32<<10)
		for sent.Load() < 64<<20 { // bounded: 64 MiB at most
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return true
			}
		}
		return true
	}
	// The client sees an error or a broken transfer, never a whole body.
	if resp, err := http.Get(e.proxy.URL + "/v2/team/app/blobs/" + layer.String()); err == nil {
		body, readErr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && readErr == nil {
			t.Fatalf("a blob larger than declared was served whole: %d bytes", len(body))
		}
		if int64(len(body)) > declared {
			t.Fatalf("%d bytes reached the client, more than the %d declared", len(body), declared)
		}
	}
	// The upstream wrote at most the declared size and what the kernel's
	// socket buffers took before the proxy hung up: far below 64 MiB.
	if n := sent.Load(); n >= 64<<20 {
		t.Fatalf("the proxy read the whole endless body (%d bytes)", n)
	}
	if cachedBlob(t, e, layer.String()) {
		t.Fatal("the oversized blob was cached")
	}
}

// cachedBlob reports whether the proxy's cache holds d.
func cachedBlob(t *testing.T, e *env, d string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(e.dataDir, "cache", "blobs", "sha256", d[7:9], d[7:], "data"))
	return err == nil
}

// linkCountingState counts the blob-link look-ups that reach the store.
type linkCountingState struct {
	store.Store
	lookups atomic.Int64
}

func (s *linkCountingState) BlobLink(ctx context.Context, upstream, repo, blob string) (int64, bool, error) {
	s.lookups.Add(1)
	return s.Store.BlobLink(ctx, upstream, repo, blob)
}

// Under auth, a warm blob GET asks the store about the link once per
// process, not once per request: with Redis state every look-up is a round
// trip on the hot path.
func TestKnownBlobLinkIsNotLookedUpAgain(t *testing.T) {
	counting := &linkCountingState{}
	e := newEnv(t, withRequiredBlobLinks(), withStateWrapper(func(s store.Store) store.Store {
		counting.Store = s
		return counting
	}))
	img, err := random.Image(2048, 1)
	if err != nil {
		t.Fatal(err)
	}
	e.push(t, "team/app:1.0", img)
	if resp, err := http.Get(e.proxy.URL + "/v2/team/app/manifests/1.0"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("manifest: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	ls, _ := img.Layers()
	layer, _ := ls[0].Digest()
	get := func() string {
		t.Helper()
		resp, err := http.Get(e.proxy.URL + "/v2/team/app/blobs/" + layer.String())
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("layer: %d", resp.StatusCode)
		}
		return resp.Header.Get("Portcullis-Cache")
	}
	// Cold, then until the cache holds it (a miss also reads the declared
	// size from the store).
	for i := 0; get() != "hit"; i++ {
		if i == 100 {
			t.Fatal("the layer never became a cache hit")
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := counting.lookups.Load()
	for range 5 {
		if got := get(); got != "hit" {
			t.Fatalf("warm GET: Portcullis-Cache %q", got)
		}
	}
	if n := counting.lookups.Load() - before; n != 0 {
		t.Fatalf("%d blob-link look-ups for 5 warm GETs of a known link, want 0", n)
	}
}
