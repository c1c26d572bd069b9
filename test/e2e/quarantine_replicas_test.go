package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/redisserver"
	"github.com/portcullis/portcullis/test/testregistry"
)

// manifestStatus is the status of a GET of repo@d through pc (0: no
// answer).
func manifestStatus(pc *harness.Portcullis, repo, d string) int {
	req, _ := http.NewRequest(http.MethodGet, pc.URL+"/v2/"+repo+"/manifests/"+d, nil)
	req.Header.Set("Accept", string(types.OCIManifestSchema1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// awaitStatus polls repo@d through every replica, at once, until each
// answers want; each gets within (bounded in time and count).
func awaitStatus(t *testing.T, replicas []*harness.Portcullis, repo, d string, want int, within time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	for i, pc := range replicas {
		wg.Go(func() {
			deadline := time.Now().Add(within)
			last := 0
			for range 1000 {
				if last = manifestStatus(pc, repo, d); last == want {
					return
				}
				if time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Errorf("replica %d answered %d, want %d, %s after the change", i, last, want, within)
		})
	}
	wg.Wait()
}

// A quarantine written to the shared store takes effect on every replica
// within a second, with a message that says so; lifting it serves the
// image again everywhere.
func TestQuarantineReachesEveryReplica(t *testing.T) {
	up := testregistry.Start(t)
	d := up.Push(t, "team/app", "1.0", testregistry.RandomImage(t, 1, 1<<10, types.OCIManifestSchema1)).String()
	redis := redisserver.Start(t)
	cfg := writeConfig(t, fmt.Sprintf(`
default_upstream: up.test
upstreams:
  - {name: up.test, url: %s}
store:
  driver: redis
  redis: {addrs: [%s]}
`, up.URL(), redis.Addr))
	bin := harness.BuildPortcullis(t)
	replicas := []*harness.Portcullis{harness.StartPortcullis(t, bin, "--config", cfg), harness.StartPortcullis(t, bin, "--config", cfg)}
	host := func(pc *harness.Portcullis) string { return strings.TrimPrefix(pc.URL, "http://") }
	crane := func(pc *harness.Portcullis) (string, error) {
		out, err := exec.Command("go", "tool", "crane", "pull", "--insecure", host(pc)+"/team/app@"+d, filepath.Join(t.TempDir(), "img.tar")).CombinedOutput()
		return string(out), err
	}
	for i, pc := range replicas {
		if out, err := crane(pc); err != nil {
			t.Fatalf("pull through replica %d before the quarantine: %v\n%s", i, err, out)
		}
	}

	ctx := context.Background()
	st, err := store.OpenRedis(ctx, store.RedisConfig{Addrs: []string{redis.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.PutQuarantine(ctx, store.Quarantine{Digest: d, Reason: "CVE-2026-1234 under investigation", CreatedBy: "e2e", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	awaitStatus(t, replicas, "team/app", d, http.StatusForbidden, time.Second)
	for i, pc := range replicas {
		out, err := crane(pc)
		if err == nil || !strings.Contains(out, "DENIED") || !strings.Contains(out, "quarantined") || !strings.Contains(out, "CVE-2026-1234 under investigation") {
			t.Errorf("crane pull through replica %d of the quarantined digest: %v\n%s", i, err, out)
		}
	}

	if _, err := st.DeleteQuarantine(ctx, d); err != nil {
		t.Fatal(err)
	}
	awaitStatus(t, replicas, "team/app", d, http.StatusOK, time.Second)
	for i, pc := range replicas {
		if out, err := crane(pc); err != nil {
			t.Errorf("pull through replica %d after the quarantine was lifted: %v\n%s", i, err, out)
		}
	}
}
