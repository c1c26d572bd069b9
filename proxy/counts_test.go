package proxy_test

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/portcullis/portcullis/proxy"
)

// reasonTally records what the proxy counts as blocked pulls.
type reasonTally struct {
	mu     sync.Mutex
	counts map[string]int
}

func (r *reasonTally) Inc(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[reason]++
}

// gateByRepo blocks the repositories it names, with their reason code.
type gateByRepo map[string]string

func (g gateByRepo) Check(_ context.Context, s proxy.Subject) (proxy.Decision, error) {
	if code, ok := g[s.Repository]; ok {
		return proxy.Decision{Verdict: proxy.Block, Message: "blocked", Reason: code}, nil
	}
	return proxy.Decision{}, nil
}

// TestBlockedPullsAndCacheCounts: each refused manifest request is counted
// once by its reason; answers from the cache and from upstream are counted
// apart (the dashboard's hit ratio).
func TestBlockedPullsAndCacheCounts(t *testing.T) {
	tally := &reasonTally{counts: map[string]int{}}
	e := newEnv(t, func(c *envConfig) { c.blockedPulls = tally })
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	good := e.push(t, "team/good:1", img)
	e.push(t, "team/bad:1", img)
	e.push(t, "team/worse:1", img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	gated := httptest.NewServer(e.p.WithGate(gateByRepo{"team/bad": "VULNERABLE", "team/worse": "UNSIGNED"}))
	defer gated.Close()
	get := func(path string) int {
		t.Helper()
		resp, err := http.Get(gated.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/v2/team/good/manifests/" + good.String(), http.StatusOK}, // miss
		{"/v2/team/good/manifests/" + good.String(), http.StatusOK}, // hit
		{"/v2/team/good/blobs/" + layer.String(), http.StatusOK},    // miss
		{"/v2/team/good/blobs/" + layer.String(), http.StatusOK},    // hit
		{"/v2/team/bad/manifests/1", http.StatusForbidden},
		{"/v2/team/bad/manifests/1", http.StatusForbidden},
		{"/v2/team/worse/manifests/1", http.StatusForbidden},
	} {
		if got := get(tc.path); got != tc.want {
			t.Fatalf("GET %s: %d, want %d", tc.path, got, tc.want)
		}
	}
	if want := map[string]int{"VULNERABLE": 2, "UNSIGNED": 1}; !maps.Equal(tally.counts, want) {
		t.Errorf("blocked pulls counted %v, want %v", tally.counts, want)
	}
	// The blocked manifests were fetched (by tag: a miss each) or read from
	// the cache (same digest) before the gate refused them.
	hits, misses := e.p.CacheCounts()
	if hits < 2 || misses < 2 || hits+misses != 7 {
		t.Errorf("CacheCounts() = %d hits, %d misses; want at least 2 of each, 7 in all", hits, misses)
	}
}
