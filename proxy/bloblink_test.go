package proxy_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"
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
			e.refuse = func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/other/") }
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
