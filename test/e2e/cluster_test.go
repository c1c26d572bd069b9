package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/redisserver"
	"github.com/portcullis/portcullis/test/s3server"
	"github.com/portcullis/portcullis/test/testregistry"
)

// cluster is one redis-server, one S3 bucket and the configuration of
// replicas that share them in front of an upstream.
type cluster struct {
	bin, config string
	redis       *redisserver.Server
	s3          *s3server.Server
}

func newCluster(t *testing.T, up *testregistry.Registry) *cluster {
	t.Helper()
	c := &cluster{redis: redisserver.Start(t), s3: s3server.Start(t), bin: harness.BuildPortcullis(t)}
	var params []string
	for k, v := range c.s3.Parameters() {
		params = append(params, fmt.Sprintf("%s: %v", k, v))
	}
	c.config = writeConfig(t, fmt.Sprintf(`
default_upstream: up.test
upstreams:
  - {name: up.test, url: %s}
store:
  driver: redis
  redis: {addrs: [%s]}
storage:
  driver: s3
  parameters: {%s}
`, up.URL(), c.redis.Addr, strings.Join(params, ", ")))
	return c
}

// start runs one more replica, with its own --data and port.
func (c *cluster) start(t *testing.T) *harness.Portcullis {
	t.Helper()
	return harness.StartPortcullis(t, c.bin, "--config", c.config)
}

// startCluster runs n replicas on one redis-server and one S3 bucket.
func startCluster(t *testing.T, up *testregistry.Registry, n int) []*harness.Portcullis {
	t.Helper()
	c := newCluster(t, up)
	var out []*harness.Portcullis
	for range n {
		out = append(out, c.start(t))
	}
	return out
}

// collectEvents reads pc's event stream until ctx ends.
func collectEvents(ctx context.Context, t *testing.T, pc *harness.Portcullis, mu *sync.Mutex, into *[]string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, pc.URL+"/api/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("event stream of %s: %v", pc.URL, err)
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			mu.Lock()
			*into = append(*into, data)
			mu.Unlock()
		}
	}
}

// Three replicas on one Redis and one S3 bucket behave as one proxy: 30
// clients spread over them pull the same cold image at once, and the
// upstream serves each blob and the manifest once, the image is scanned
// once, every client gets verified bytes and the same verdict, and an
// event stream on every replica announces the scan once.
func TestClusterPullsAndScansOnce(t *testing.T) {
	up := testregistry.Start(t)
	img := testregistry.RandomImage(t, 3, 512<<10, types.OCIManifestSchema1)
	d := up.Push(t, "team/app", "1.0", img).String()
	blobs := layers(t, img)
	cfg, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	blobs = append(blobs, cfg)
	replicas := startCluster(t, up, 3)
	up.ResetCounts()

	// An event stream on every replica, from before the pulls.
	ctx, stopStreams := context.WithCancel(context.Background())
	defer stopStreams()
	var mu sync.Mutex
	events := make([][]string, len(replicas))
	var streams sync.WaitGroup
	for i, pc := range replicas {
		streams.Go(func() { collectEvents(ctx, t, pc, &mu, &events[i]) })
	}
	time.Sleep(300 * time.Millisecond) // the streams subscribe

	var wg sync.WaitGroup
	verdicts := make([]string, 30)
	for i := range 30 {
		wg.Go(func() {
			pc := replicas[i%len(replicas)]
			r := do(t, "GET", pc.URL+"/v2/team/app/manifests/1.0", "Accept", string(types.OCIManifestSchema1))
			if r.err != nil || r.status != 200 || sha(r.body) != d {
				t.Errorf("client %d: manifest %d %v (digest %s, want %s)", i, r.status, r.err, sha(r.body), d)
				return
			}
			verdicts[i] = r.header.Get("Portcullis-Verdict")
			for _, b := range blobs {
				r := do(t, "GET", pc.URL+"/v2/team/app/blobs/"+b.String())
				if r.err != nil || r.status != 200 || sha(r.body) != b.String() {
					t.Errorf("client %d: blob %s: %d %v", i, b, r.status, r.err)
				}
			}
		})
	}
	wg.Wait()
	for i, v := range verdicts {
		if v != verdicts[0] {
			t.Errorf("client %d got verdict %q, client 0 %q", i, v, verdicts[0])
		}
	}
	if n := up.Count("GET", `/manifests/`); n != 1 {
		t.Errorf("the upstream served the manifest %d times, want 1", n)
	}
	for _, b := range blobs {
		if n := up.Count("GET", "/blobs/"+regexp.QuoteMeta(b.String())); n != 1 {
			t.Errorf("the upstream served blob %s %d times, want 1", b, n)
		}
	}

	// One scan, announced once on every replica's stream.
	waitScanned(t, replicas[0], d)
	scanned := func(i int) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, e := range events[i] {
			var ev struct{ Type, Digest string }
			if json.Unmarshal([]byte(e), &ev) == nil && ev.Type == "scan" && ev.Digest == d {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if scanned(0) >= 1 && scanned(1) >= 1 && scanned(2) >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scan events seen per replica: %d %d %d, want 1 each", scanned(0), scanned(1), scanned(2))
		}
	}
	time.Sleep(500 * time.Millisecond) // a duplicate would arrive by now
	for i := range replicas {
		if n := scanned(i); n != 1 {
			t.Errorf("replica %d's event stream announced the scan %d times, want 1", i, n)
		}
	}
	total := 0
	for _, pc := range replicas {
		total += strings.Count(pc.Logs.String(), `"msg":"scanned"`)
	}
	if total != 1 {
		t.Errorf("the image was scanned %d times across the replicas, want 1", total)
	}
	stopStreams()
	streams.Wait()
}

// waitScanned waits (bounded) until pc's API reports d scanned.
func waitScanned(t *testing.T, pc *harness.Portcullis, d string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := do(t, "GET", pc.URL+"/api/v1/scans/"+d)
		if r.status == 200 && strings.Contains(string(r.body), `"state": "done"`) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not scanned: %d %s", d, r.status, r.body)
		}
	}
}
