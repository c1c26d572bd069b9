package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/testregistry"
)

// BenchmarkImageStatusByRef measures what an admission controller sees:
// GET /api/v1/images?ref=REPO:TAG for a tag within its TTL whose verdict
// is known, from statusWorkers keep-alive goroutines, statusRequests per
// iteration. For scale, the same number of manifest GETs by the same tag
// (also answered from the tag cache) run in the same iteration, alternating
// which goes first. The upstream must see no request during either.
func BenchmarkImageStatusByRef(b *testing.B) {
	const (
		repo           = "bench/status"
		tag            = "v1"
		statusWorkers  = 16
		statusRequests = 8000
	)
	up := testregistry.Start(b)
	want := up.Push(b, repo, tag, testregistry.RandomImage(b, 1, 1024, types.OCIManifestSchema1))
	pc := startPortcullis(b, up, "")
	c := newClient(b)
	statusURL := pc.URL + "/api/v1/images?ref=" + url.QueryEscape(upstreamName+"/"+repo+":"+tag)
	manifestURL := pc.URL + "/v2/" + repo + "/manifests/" + tag
	hdr := http.Header{"Accept": {manifestAccept}}

	// Make the verdict known: evaluate and wait for it.
	var first struct{ Digest, Verdict string }
	resp, err := c.Get(statusURL + "&evaluate=true&wait=2m")
	if err != nil {
		b.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&first)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || first.Digest != want.String() || (first.Verdict != "allow" && first.Verdict != "warn") {
		b.Fatalf("first lookup: %d %+v %v", resp.StatusCode, first, err)
	}
	up.ResetCounts()

	// run sends n GETs from workers goroutines and returns each latency.
	run := func(u string, h http.Header) ([]time.Duration, time.Duration, error) {
		lat := make([]time.Duration, statusRequests)
		var next int
		var mu sync.Mutex
		var firstErr error
		began := time.Now()
		var wg sync.WaitGroup
		for range statusWorkers {
			wg.Go(func() {
				buf := make([]byte, 32<<10)
				for {
					mu.Lock()
					i := next
					next++
					mu.Unlock()
					if i >= statusRequests {
						return
					}
					req, _ := http.NewRequestWithContext(b.Context(), http.MethodGet, u, nil)
					req.Header = h
					t0 := time.Now()
					resp, err := c.Do(req)
					if err == nil {
						_, err = io.CopyBuffer(io.Discard, resp.Body, buf)
						resp.Body.Close()
						if err == nil && resp.StatusCode != http.StatusOK {
							err = fmt.Errorf("GET %s: %s", u, resp.Status)
						}
					}
					lat[i] = time.Since(t0)
					if err != nil {
						mu.Lock()
						firstErr = err
						next = statusRequests
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
		return lat, time.Since(began), firstErr
	}

	// For scale: one client alone, no queueing behind 15 others.
	var serial []time.Duration
	for range 500 {
		t0 := time.Now()
		resp, err := c.Get(statusURL)
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s: %d %v", statusURL, resp.StatusCode, err)
		}
		serial = append(serial, time.Since(t0))
	}
	slices.Sort(serial)
	up.ResetCounts()

	var statusLat []time.Duration
	var statusTime, manifestTime, statusCPU, manifestCPU time.Duration
	rounds := 0
	for i := 0; b.Loop(); i++ {
		for _, status := range []bool{i%2 == 0, i%2 != 0} {
			cpu0 := mustProcCPU(b, pc.Pid())
			if status {
				lat, took, err := run(statusURL, nil)
				if err != nil {
					b.Fatal(err)
				}
				statusLat, statusTime = append(statusLat, lat...), statusTime+took
				statusCPU += mustProcCPU(b, pc.Pid()) - cpu0
			} else {
				_, took, err := run(manifestURL, hdr)
				if err != nil {
					b.Fatal(err)
				}
				manifestTime += took
				manifestCPU += mustProcCPU(b, pc.Pid()) - cpu0
			}
		}
		rounds++
	}
	if n := up.Count("", ".*"); n != 0 {
		b.Fatalf("the upstream saw %d requests while the tag was within its TTL", n)
	}
	slices.Sort(statusLat)
	pct := func(p float64) float64 {
		return float64(statusLat[int(p*float64(len(statusLat)-1))].Microseconds())
	}
	total := float64(rounds * statusRequests)
	b.ReportMetric(total/statusTime.Seconds(), "status-req/s")
	b.ReportMetric(pct(0.50), "status-p50-us")
	b.ReportMetric(float64(serial[len(serial)/2].Microseconds()), "status-serial-p50-us")
	b.ReportMetric(pct(0.99), "status-p99-us")
	b.ReportMetric(total/manifestTime.Seconds(), "manifest-req/s")
	b.ReportMetric(manifestTime.Seconds()/statusTime.Seconds(), "ratio-status/manifest")
	b.ReportMetric(float64(statusCPU.Microseconds())/total, "portcullis-cpu-us/status")
	b.ReportMetric(float64(manifestCPU.Microseconds())/total, "portcullis-cpu-us/manifest")
}
