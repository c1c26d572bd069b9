package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/redisserver"
	"github.com/portcullis/portcullis/test/s3server"
	"github.com/portcullis/portcullis/test/testregistry"
)

// startBenchCluster runs replicas portcullis processes on one redis-server
// and one S3 bucket (versitygw), each with its own --data and port, in
// front of up: the configuration of README "Running more than one replica".
func startBenchCluster(b *testing.B, up *testregistry.Registry, replicas int) []*harness.Portcullis {
	b.Helper()
	rs := redisserver.Start(b)
	srv := s3server.Start(b)
	params := make([]string, 0, len(srv.Parameters()))
	for k, v := range srv.Parameters() {
		params = append(params, fmt.Sprintf("%s: %v", k, v))
	}
	sort.Strings(params)
	config := upstreamConfig(up) + redisStoreConfig(rs) +
		fmt.Sprintf("storage:\n  driver: s3\n  parameters: {%s}\n", strings.Join(params, ", "))
	out := make([]*harness.Portcullis, 0, replicas)
	for range replicas {
		out = append(out, startWithConfig(b, config))
	}
	return out
}

// herdImage is one image of the herd: its tag, manifest digest and the
// digests of its config and layers (the blobs a client pulls).
type herdImage struct {
	repo, tag string
	manifest  v1.Hash
	blobs     []v1.Hash
}

// pushHerdImage pushes a new random image of layers layers of layerSize
// bytes to up: cold for every replica.
func pushHerdImage(b *testing.B, up *testregistry.Registry, repo, tag string, layers int, layerSize int64) herdImage {
	b.Helper()
	img := testregistry.RandomImage(b, layers, layerSize, types.OCIManifestSchema1)
	h := herdImage{repo: repo, tag: tag, manifest: up.Push(b, repo, tag, img)}
	ls, err := img.Layers()
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			b.Fatal(err)
		}
		h.blobs = append(h.blobs, d)
	}
	cfg, err := img.ConfigName()
	if err != nil {
		b.Fatal(err)
	}
	h.blobs = append(h.blobs, cfg)
	return h
}

// pullImage does what a client's pull does on the wire: the manifest by
// tag, then every blob, each body hashed and checked against its digest.
// It returns the Portcullis-Cache answers of the blob GETs.
func pullImage(ctx context.Context, c *http.Client, base string, img herdImage) ([]string, error) {
	buf := make([]byte, 256<<10)
	m, err := fetch(ctx, c, base+"/v2/"+img.repo+"/manifests/"+img.tag, http.Header{"Accept": {manifestAccept}}, true, buf)
	if err != nil {
		return nil, err
	}
	if m.digest != img.manifest.String() {
		return nil, fmt.Errorf("manifest %s:%s hashes to %s, want %s", img.repo, img.tag, m.digest, img.manifest)
	}
	sources := make([]string, 0, len(img.blobs))
	for _, d := range img.blobs {
		r, err := fetch(ctx, c, blobURL(base, img.repo, d), nil, true, buf)
		if err != nil {
			return nil, err
		}
		if r.digest != d.String() {
			return nil, fmt.Errorf("blob %s: body hashes to %s", d, r.digest)
		}
		sources = append(sources, r.cache)
	}
	return sources, nil
}

// herdPull has clients pull img at once (released together), client i from
// bases[i % len(bases)], and returns the wall time from release to the last
// body, the blob GETs' Portcullis-Cache answers and the first error.
func herdPull(ctx context.Context, c *http.Client, bases []string, img herdImage, clients int) (time.Duration, map[string]int, error) {
	var mu sync.Mutex
	sources := map[string]int{}
	var firstErr error
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	for i := range clients {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-release
			srcs, err := pullImage(ctx, c, bases[i%len(bases)], img)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("client %d: %w", i, err)
			}
			for _, s := range srcs {
				sources[s]++
			}
		}()
	}
	ready.Wait()
	start := time.Now()
	close(release)
	done.Wait()
	return time.Since(start), sources, firstErr
}

// scanState is the state of d's scan record as pc's API reports it, or ""
// while there is none.
func scanState(ctx context.Context, c *http.Client, pc *harness.Portcullis, d v1.Hash) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pc.URL+"/api/v1/scans/"+d.String(), nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", fmt.Errorf("GET scan of %s: %w", d, err)
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return "", nil
	case http.StatusOK:
	default:
		return "", fmt.Errorf("GET scan of %s: %s: %.200s", d, resp.Status, body)
	}
	var rec struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal(body, &rec); err != nil {
		return "", fmt.Errorf("GET scan of %s: %w", d, err)
	}
	return rec.State, nil
}

// waitScanDone waits (at most a minute) until pc reports d's scan done.
func waitScanDone(b *testing.B, c *http.Client, pc *harness.Portcullis, d v1.Hash) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		state, err := scanState(b.Context(), c, pc, d)
		switch {
		case err != nil:
			b.Fatal(err)
		case state == "done":
			return
		case state == "failed":
			b.Fatalf("scan of %s failed", d)
		case time.Now().After(deadline):
			b.Fatalf("scan of %s not done within a minute (state %q)", d, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scansLogged counts the scans of d the replicas logged ("scanned" or
// "scan failed"), across all of them.
func scansLogged(replicas []*harness.Portcullis, d v1.Hash) int {
	n := 0
	for _, pc := range replicas {
		for line := range strings.Lines(pc.Logs.String()) {
			if (strings.Contains(line, `"msg":"scanned"`) || strings.Contains(line, `"msg":"scan failed"`)) &&
				strings.Contains(line, `"digest":"`+d.String()+`"`) {
				n++
			}
		}
	}
	return n
}

// BenchmarkClusterHerd runs herdReplicas replicas on one Redis and one S3
// bucket and has herdClients clients, spread over the replicas, pull one
// cold multi-layer image at once; every iteration pushes a new image, so
// each is cold. It reports the most upstream GETs of any one blob and of
// the manifest (targets 1), the most scans of any one image (target 1), and
// the wall time until every client had verified every body. For scale, the
// same clients also pull the image from the upstream directly.
func BenchmarkClusterHerd(b *testing.B) {
	const (
		herdReplicas = 3
		herdClients  = 30
		herdLayers   = 4
		layerSize    = 4 << 20
		repo         = "bench/herd"
	)
	up := testregistry.Start(b)
	replicas := startBenchCluster(b, up, herdReplicas)
	bases := make([]string, len(replicas))
	for i, pc := range replicas {
		bases[i] = pc.URL
	}
	c := newClient(b)

	var images []herdImage
	var herdWall, scanWall, directWall time.Duration
	var maxBlobGETs, maxManifestGETs, blobGETs, blobCount int
	sources := map[string]int{}
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		img := pushHerdImage(b, up, repo, fmt.Sprintf("v%d", i), herdLayers, layerSize)
		images = append(images, img)
		b.StartTimer()

		direct := func() {
			wall, _, err := herdPull(b.Context(), c, []string{up.URL()}, img, herdClients)
			if err != nil {
				b.Fatalf("direct: %v", err)
			}
			directWall += wall
		}
		viaCluster := func() {
			b.StopTimer()
			up.ResetCounts()
			b.StartTimer()
			start := time.Now()
			wall, srcs, err := herdPull(b.Context(), c, bases, img, herdClients)
			if err != nil {
				b.Fatalf("cluster: %v", err)
			}
			herdWall += wall
			// The scan runs in the background; its end is timed as seen by
			// a client polling the API (20 ms steps), for information.
			waitScanDone(b, c, replicas[0], img.manifest)
			scanWall += time.Since(start)
			b.StopTimer()
			for _, d := range img.blobs {
				n := up.Count(http.MethodGet, "/blobs/"+regexp.QuoteMeta(d.String())+"$")
				maxBlobGETs = max(maxBlobGETs, n)
				blobGETs += n
				blobCount++
				if n != 1 {
					b.Logf("iteration %d: the upstream served blob %s %d times", i, d, n)
				}
			}
			maxManifestGETs = max(maxManifestGETs, up.Count(http.MethodGet, "/manifests/"))
			for s, n := range srcs {
				sources[s] += n
			}
			b.StartTimer()
		}
		if i%2 == 0 {
			viaCluster()
			direct()
		} else {
			direct()
			viaCluster()
		}
	}
	b.StopTimer()
	// A duplicate scan would run after the first finished: give it time to
	// show in the logs before counting.
	time.Sleep(time.Second)
	maxScans := 0
	for _, img := range images {
		n := scansLogged(replicas, img.manifest)
		maxScans = max(maxScans, n)
		if n != 1 {
			b.Logf("image %s was scanned %d times", img.manifest, n)
		}
	}
	runs := float64(len(images))
	b.ReportMetric(float64(maxBlobGETs), "max-upstream-GETs/blob")
	b.ReportMetric(float64(blobGETs)/float64(blobCount), "upstream-GETs/blob")
	b.ReportMetric(float64(maxManifestGETs), "max-upstream-manifest-GETs")
	b.ReportMetric(float64(maxScans), "max-scans/image")
	b.ReportMetric(float64(herdWall.Milliseconds())/runs, "herd-wall-ms")
	b.ReportMetric(float64(scanWall.Milliseconds())/runs, "until-scanned-ms")
	b.ReportMetric(float64(directWall.Milliseconds())/runs, "direct-wall-ms")
	for _, s := range []string{"miss", "coalesced", "hit"} {
		sources[s] += 0 // reported even when no GET had it
	}
	for s, n := range sources {
		if s == "" {
			s = "unlabelled"
		}
		b.ReportMetric(float64(n)/runs, s+"-blob-GETs")
	}
}
