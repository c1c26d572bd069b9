package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/testregistry"
)

// manifestAccept is what the benchmark client accepts, on both sides.
var manifestAccept = strings.Join([]string{
	string(types.OCIImageIndex),
	string(types.OCIManifestSchema1),
	string(types.DockerManifestList),
	string(types.DockerManifestSchema2),
}, ", ")

// BenchmarkManifestByTagWarm compares manifest GETs by tag through
// portcullis, within the tag TTL (served from its tag cache and manifest
// cache, no upstream request), with the same GETs against the upstream
// directly: same client, manifestWorkers keep-alive goroutines, and
// manifestRequests requests per side per iteration, alternating which side
// goes first.
func BenchmarkManifestByTagWarm(b *testing.B) {
	const (
		repo             = "bench/manifest"
		tag              = "v1"
		manifestWorkers  = 8
		manifestRequests = 4000
	)
	up := testregistry.Start(b)
	want := up.Push(b, repo, tag, testregistry.RandomImage(b, 1, 1024, types.OCIManifestSchema1))
	pc := startPortcullis(b, up, "")
	c := newClient(b)
	path := "/v2/" + repo + "/manifests/" + tag
	hdr := http.Header{"Accept": {manifestAccept}}

	get := func(url string) (string, error) {
		r, err := fetch(b.Context(), c, url, hdr, true, make([]byte, 4096))
		if err != nil {
			return "", err
		}
		if r.digest != want.String() {
			return "", fmt.Errorf("GET %s: manifest hashes to %s, want %s", url, r.digest, want)
		}
		return r.cache, nil
	}
	// The first GET through portcullis resolves the tag upstream; from then
	// on, until the TTL (5m) passes, it is answered from the cache.
	if src, err := get(pc.URL + path); err != nil || src != "miss" {
		b.Fatalf("first GET: Portcullis-Cache %q, err %v; want miss", src, err)
	}
	if src, err := get(pc.URL + path); err != nil || src != "hit" {
		b.Fatalf("second GET: Portcullis-Cache %q, err %v; want hit", src, err)
	}
	if _, err := get(up.URL() + path); err != nil {
		b.Fatal(err)
	}
	up.ResetCounts()

	var pcTime, directTime, pcCPU, proxyCPU, directCPU time.Duration
	var rounds int
	for i := 0; b.Loop(); i++ {
		for _, toPC := range []bool{i%2 == 0, i%2 != 0} {
			base, wantSrc := up.URL(), ""
			if toPC {
				base, wantSrc = pc.URL, "hit"
			}
			cpu0, pc0 := selfCPU(), mustProcCPU(b, pc.Pid())
			d, err := hammer(b.Context(), c, base+path, hdr, want.String(), wantSrc, manifestWorkers, manifestRequests)
			if err != nil {
				b.Fatal(err)
			}
			cpu1, pc1 := selfCPU(), mustProcCPU(b, pc.Pid())
			if toPC {
				pcTime += d
				pcCPU += pc1 - pc0
				proxyCPU += cpu1 - cpu0 + pc1 - pc0
			} else {
				directTime += d
				directCPU += cpu1 - cpu0
			}
		}
		rounds++
	}
	// Everything through portcullis was a cache hit: the upstream saw only
	// the direct side's requests.
	if n, direct := up.Count("", "/manifests/"), rounds*manifestRequests; n != direct {
		b.Errorf("upstream saw %d manifest requests, want the %d sent to it directly", n, direct)
	}
	total := float64(rounds * manifestRequests)
	b.ReportMetric(total/pcTime.Seconds(), "portcullis-req/s")
	b.ReportMetric(total/directTime.Seconds(), "direct-req/s")
	b.ReportMetric(directTime.Seconds()/pcTime.Seconds(), "ratio-portcullis/direct")
	perReq := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / total }
	b.ReportMetric(perReq(directCPU), "direct-cpu-us/req")
	b.ReportMetric(perReq(proxyCPU), "proxy-cpu-us/req")
	b.ReportMetric(perReq(pcCPU), "portcullis-cpu-us/req")
}

// hammer sends requests GETs of url from workers goroutines and returns the
// wall time. Every answer must be 200 with the wanted Docker-Content-Digest
// and, when wantSrc is set, that Portcullis-Cache value.
func hammer(ctx context.Context, c *http.Client, url string, hdr http.Header, wantDigest, wantSrc string, workers, requests int) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(requests) {
				if err := manifestGet(ctx, c, url, hdr, wantDigest, wantSrc); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	return d, <-errs
}

func manifestGet(ctx context.Context, c *http.Client, url string, hdr http.Header, wantDigest, wantSrc string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header = hdr.Clone()
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	switch {
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	case resp.Header.Get("Docker-Content-Digest") != wantDigest:
		return fmt.Errorf("GET %s: Docker-Content-Digest %q, want %s", url, resp.Header.Get("Docker-Content-Digest"), wantDigest)
	case "sha256:"+hex.EncodeToString(sha256Sum(body)) != wantDigest:
		return fmt.Errorf("GET %s: body does not hash to %s", url, wantDigest)
	case wantSrc != "" && resp.Header.Get("Portcullis-Cache") != wantSrc:
		return fmt.Errorf("GET %s: Portcullis-Cache %q, want %s", url, resp.Header.Get("Portcullis-Cache"), wantSrc)
	}
	return nil
}

func sha256Sum(p []byte) []byte {
	s := sha256.Sum256(p)
	return s[:]
}
