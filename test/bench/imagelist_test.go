package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/test/bench/fleet"
)

// listRounds is how many times each page is fetched per iteration.
const listRounds = 40

// listFleet is a filled state file served by the status API on loopback.
type listFleet struct {
	st     *store.Bolt
	h      *api.Handler
	url    string
	counts fleet.Counts
	deep   string // a cursor three quarters into the list
	// deepRecent: the same in the newest-first order (sort=recent).
	deepRecent string
}

func newListFleet(b *testing.B, n int) *listFleet {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	counts, err := fleet.FillDir(ctx, dir, n, 12)
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.OpenBolt(filepath.Join(dir, "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	f := &listFleet{st: st, h: &api.Handler{Scans: st, Counters: st}, counts: counts}
	srv := httptest.NewServer(f.h)
	b.Cleanup(srv.Close)
	f.url = srv.URL + "/api/v1/images?"
	total := 0
	for _, v := range counts.Verdicts {
		total += v
	}
	f.deep = deepCursor(b, f.url, total)
	f.deepRecent = deepCursor(b, f.url+"sort=recent&", total)
	return f
}

// deepCursor walks the list at url (a query prefix) in pages of an eighth
// of the verdicts (1000 at most, what a page takes) to three quarters of
// them, and returns the cursor there.
func deepCursor(b *testing.B, url string, total int) string {
	b.Helper()
	seen, cursor := 0, ""
	step := max(1, min(total/8, 1000))
	for seen < total*3/4 {
		var page struct {
			Images     []json.RawMessage `json:"images"`
			NextCursor string            `json:"next_cursor"`
		}
		getJSON(b, url+fmt.Sprintf("limit=%d&cursor=%s", step, cursor), &page)
		seen += len(page.Images)
		if cursor = page.NextCursor; cursor == "" {
			b.Fatalf("list %s ended after %d of %d verdicts", url, seen, total)
		}
	}
	return cursor
}

func getJSON(b *testing.B, url string, v any) {
	b.Helper()
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		b.Fatalf("GET %s: %s %s", url, resp.Status, body)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		b.Fatalf("GET %s: %v", url, err)
	}
}

// timeGets fetches url rounds times and returns each latency; every answer
// must be a page of at least minImages.
func timeGets(b *testing.B, c *http.Client, url string, rounds, minImages int) []time.Duration {
	b.Helper()
	lat := make([]time.Duration, 0, rounds)
	for range rounds {
		t0 := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		var page struct {
			Images []json.RawMessage `json:"images"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		lat = append(lat, time.Since(t0))
		if err != nil || resp.StatusCode != http.StatusOK || len(page.Images) < minImages {
			b.Fatalf("GET %s: %d, %d images, %v", url, resp.StatusCode, len(page.Images), err)
		}
	}
	return lat
}

// percentile is the p-th percentile (0–100) of lat, nearest rank.
func percentile(lat []time.Duration, p float64) time.Duration {
	s := slices.Clone(lat)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkImagesList10000 measures the status API's images list over a
// store of 10,000 images (about 20,000 verdicts; test/bench/fleet), page
// by page: the first page, a page three quarters deep (by cursor), the
// same two newest first (sort=recent: the store's index by time), a page
// filtered by verdict and one filtered by vulnerability id (which reads
// each candidate's scan record); and the overview, cold (a fresh handler:
// one walk of every verdict and scan record) and cached. The baseline is
// the same requests over 100 images, in the same run. Metrics: p50 and p95
// in ms at 10,000 images, and p95 at 10,000 ÷ p95 at 100.
func BenchmarkImagesList10000(b *testing.B) {
	big, small := newListFleet(b, 10000), newListFleet(b, 100)
	c := newClient(b)
	// The most common vulnerability: a filter that matches many images.
	vuln := fleet.VulnID(0)
	pages := []struct {
		name, query string
		minImages   int
	}{
		{"first", "limit=50", 50},
		{"deep", "limit=50&cursor=", 1},
		{"recent", "limit=50&sort=recent", 50},
		{"recent-deep", "limit=50&sort=recent&cursor=", 1},
		{"verdict", "limit=50&verdict=block", 1},
		{"vulnerability", "limit=50&vulnerability=" + vuln, 1},
	}
	type result struct{ big, small []time.Duration }
	results := map[string]*result{}
	for _, p := range pages {
		results[p.name] = &result{}
	}
	results["overview-cold"], results["overview-cached"] = &result{}, &result{}
	iteration := 0
	for b.Loop() {
		iteration++
		order := []*listFleet{big, small}
		if iteration%2 == 0 { // alternate which store goes first
			order = []*listFleet{small, big}
		}
		for _, p := range pages {
			for _, f := range order {
				q := p.query
				switch p.name {
				case "deep":
					q += f.deep
				case "recent-deep":
					q += f.deepRecent
				}
				lat := timeGets(b, c, f.url+q, listRounds, p.minImages)
				if f == big {
					results[p.name].big = append(results[p.name].big, lat...)
				} else {
					results[p.name].small = append(results[p.name].small, lat...)
				}
			}
		}
		for _, f := range []*listFleet{big, small} {
			cold, cached := overviewTimes(b, f)
			r := results["overview-cold"]
			r2 := results["overview-cached"]
			if f == big {
				r.big, r2.big = append(r.big, cold...), append(r2.big, cached...)
			} else {
				r.small, r2.small = append(r.small, cold...), append(r2.small, cached...)
			}
		}
	}
	for _, name := range []string{"first", "deep", "recent", "recent-deep", "verdict", "vulnerability", "overview-cold", "overview-cached"} {
		r := results[name]
		b.ReportMetric(ms(percentile(r.big, 50)), name+"-p50-ms")
		b.ReportMetric(ms(percentile(r.big, 95)), name+"-p95-ms")
		b.ReportMetric(float64(percentile(r.big, 95))/float64(percentile(r.small, 95)), name+"-p95-ratio-10000/100")
		b.Logf("%-16s 10,000 images: p50 %7.2f ms  p95 %7.2f ms | 100 images: p50 %6.2f ms  p95 %6.2f ms",
			name, ms(percentile(r.big, 50)), ms(percentile(r.big, 95)), ms(percentile(r.small, 50)), ms(percentile(r.small, 95)))
	}
}

// overviewTimes times Overview cold (a fresh handler each time: nothing
// cached) a few times, then cached, and checks its counts against what the
// fleet holds.
func overviewTimes(b *testing.B, f *listFleet) (cold, cached []time.Duration) {
	b.Helper()
	ctx := context.Background()
	for range 5 {
		h := &api.Handler{Scans: f.st, Counters: f.st}
		t0 := time.Now()
		ov, err := h.Overview(ctx)
		cold = append(cold, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		for v, n := range f.counts.Verdicts {
			if ov.Verdicts[v] != n {
				b.Fatalf("overview counts %d %s verdicts, the fleet holds %d", ov.Verdicts[v], v, n)
			}
		}
	}
	for range listRounds {
		t0 := time.Now()
		if _, err := f.h.Overview(ctx); err != nil {
			b.Fatal(err)
		}
		cached = append(cached, time.Since(t0))
	}
	return cold, cached
}
