package bench

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/bench/fleet"
	"github.com/portcullis/portcullis/ui"
)

// BenchmarkDashboardImages10000 measures the dashboard's HTML pages over a
// store of 10,000 images (about 20,000 verdicts; test/bench/fleet): the
// images list's first page, a page three quarters deep (by cursor), the
// newest verdicts first (sort=recent), pages
// filtered by verdict and by vulnerability id (each row also reads its
// scan and verdict records), and the overview (its aggregates cached after
// the first walk). Baseline: the same pages over 100 images in the same
// run. Metrics: p50 and p95 in ms at 10,000 images, and p95 at 10,000 ÷
// p95 at 100.
func BenchmarkDashboardImages10000(b *testing.B) {
	big, small := newListFleet(b, 10000), newListFleet(b, 100)
	c := newClient(b)
	uiURL := map[*listFleet]string{}
	for _, f := range []*listFleet{big, small} {
		h, err := ui.New(ui.Options{API: f.h})
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(h)
		b.Cleanup(srv.Close)
		uiURL[f] = srv.URL
	}
	pages := []struct{ name, path string }{
		{"images-first", "/ui/images?limit=50"},
		{"images-deep", "/ui/images?limit=50&cursor="},
		{"images-recent", "/ui/images?limit=50&sort=recent"},
		{"images-verdict", "/ui/images?limit=50&verdict=block"},
		{"images-vulnerability", "/ui/images?limit=50&vulnerability=" + url.QueryEscape(fleet.VulnID(0))},
		{"overview", "/ui/"},
	}
	type result struct{ big, small []time.Duration }
	results := map[string]*result{}
	for _, p := range pages {
		results[p.name] = &result{}
	}
	iteration := 0
	for b.Loop() {
		iteration++
		order := []*listFleet{big, small}
		if iteration%2 == 0 {
			order = []*listFleet{small, big}
		}
		for _, p := range pages {
			for _, f := range order {
				u := uiURL[f] + p.path
				if p.name == "images-deep" {
					u += url.QueryEscape(f.deep)
				}
				lat := timePages(b, c, u, listRounds)
				if f == big {
					results[p.name].big = append(results[p.name].big, lat...)
				} else {
					results[p.name].small = append(results[p.name].small, lat...)
				}
			}
		}
	}
	for _, p := range pages {
		r := results[p.name]
		b.ReportMetric(ms(percentile(r.big, 50)), p.name+"-p50-ms")
		b.ReportMetric(ms(percentile(r.big, 95)), p.name+"-p95-ms")
		b.ReportMetric(float64(percentile(r.big, 95))/float64(percentile(r.small, 95)), p.name+"-p95-ratio-10000/100")
		b.Logf("%-21s 10,000 images: p50 %7.2f ms  p95 %7.2f ms | 100 images: p50 %6.2f ms  p95 %6.2f ms",
			p.name, ms(percentile(r.big, 50)), ms(percentile(r.big, 95)), ms(percentile(r.small, 50)), ms(percentile(r.small, 95)))
	}
}

// timePages fetches a page rounds times, whole, and returns each latency;
// every answer must be a 200 HTML page with its main element.
func timePages(b *testing.B, c *http.Client, u string, rounds int) []time.Duration {
	b.Helper()
	lat := make([]time.Duration, 0, rounds)
	for range rounds {
		t0 := time.Now()
		resp, err := c.Get(u)
		if err != nil {
			b.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(t0))
		if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `<main id="main"`) {
			b.Fatalf("GET %s: %d, %v\n%.500s", u, resp.StatusCode, err, body)
		}
	}
	return lat
}
