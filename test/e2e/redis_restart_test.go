package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/redisserver"
)

// Redis restarting (empty) under a running replica: cached content and the
// verdicts it served keep being served while Redis is away, /readyz says
// it is degraded, a new image gets a clear answer at once, and pulls
// queue, scan and judge again as soon as Redis is back, with no restart.
func TestRedisRestartMidRun(t *testing.T) {
	up := startUpstream(t)
	cached := ociImage(t, 256<<10)
	cachedDigest := up.Push(t, "team/app", "1.0", cached).String()
	fresh := ociImage(t, 256<<10)
	freshDigest := up.Push(t, "team/app", "2.0", fresh).String()
	rs := redisserver.Start(t)
	config := writeConfig(t, "default_upstream: up.test\nupstreams: [{name: up.test, url: "+up.URL()+"}]\nstore: {driver: redis, redis: {addrs: [\""+rs.Addr+"\"]}}\n")
	pc := harness.StartPortcullis(t, harness.BuildPortcullis(t), "--config", config)

	pull := func(tag string, blobs []string) {
		t.Helper()
		r := do(t, "GET", pc.URL+"/v2/team/app/manifests/"+tag, "Accept", string(types.OCIManifestSchema1))
		if r.err != nil || r.status != 200 {
			t.Fatalf("manifest %s: %d %v %s", tag, r.status, r.err, r.body)
		}
		for _, b := range blobs {
			r := do(t, "GET", pc.URL+"/v2/team/app/blobs/"+b)
			if r.err != nil || r.status != 200 || sha(r.body) != b {
				t.Fatalf("blob %s: %d %v %s", b, r.status, r.err, r.body)
			}
		}
	}
	var cachedBlobs []string
	for _, l := range layers(t, cached) {
		cachedBlobs = append(cachedBlobs, l.String())
	}
	pull("1.0", cachedBlobs)
	waitScanned(t, pc, cachedDigest)
	pull("1.0", cachedBlobs) // served with its verdict, remembered

	rs.Kill()
	pull("1.0", cachedBlobs)
	// Degraded for the state store (the test has no vulnerability database
	// either, which /readyz reports too).
	if r := do(t, "GET", pc.URL+"/readyz"); r.status != 200 || !strings.Contains(string(r.body), "state store unreachable") {
		t.Fatalf("readyz with Redis away: %d %s", r.status, r.body)
	}
	// A new image: a clear answer now (served with the default policy's
	// warning, or refused), not a hang or an internal error.
	r := do(t, "GET", pc.URL+"/v2/team/app/manifests/2.0", "Accept", string(types.OCIManifestSchema1))
	if r.err != nil || (r.status != 200 && r.status != 403) {
		t.Fatalf("new image with Redis away: %d %v %s", r.status, r.err, r.body)
	}

	rs.Restart() // empty: the state is gone with it
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		r := do(t, "GET", pc.URL+"/readyz")
		if r.status == 200 && !strings.Contains(string(r.body), "state store") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz with Redis back: %d %s", r.status, r.body)
		}
	}
	pull("2.0", nil)
	waitScanned(t, pc, freshDigest)
}
