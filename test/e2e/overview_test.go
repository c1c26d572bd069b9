package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

// overviewAnswer is what the tests read of GET /api/v1/overview.
type overviewAnswer struct {
	Verdicts map[string]int `json:"verdicts"`
	Blocked  []struct {
		Code  string `json:"code"`
		Count int64  `json:"count"`
	} `json:"blocked_last_24h"`
	Top []struct {
		ID     string `json:"id"`
		Images int    `json:"images"`
	} `json:"top_vulnerabilities"`
	CacheHits   int64  `json:"cache_hits"`
	CacheMisses int64  `json:"cache_misses"`
	DBState     string `json:"db_state"`
	DBVersion   string `json:"db_version"`
	Recent      []struct {
		Digest string `json:"digest"`
		To     string `json:"to"`
	} `json:"recent_changes"`
}

func (o overviewAnswer) blocked() (byCode map[string]int64, total int64) {
	byCode = map[string]int64{}
	for _, b := range o.Blocked {
		byCode[b.Code] += b.Count
		total += b.Count
	}
	return byCode, total
}

func getOverview(t *testing.T, pc *harness.Portcullis) overviewAnswer {
	t.Helper()
	r := do(t, "GET", pc.URL+"/api/v1/overview")
	var o overviewAnswer
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("GET /api/v1/overview: %d %s %v", r.status, r.body, r.err)
	}
	if err := json.Unmarshal(r.body, &o); err != nil {
		t.Fatalf("overview: %v\n%s", err, r.body)
	}
	return o
}

// waitBlocked polls pc's overview until it counts want blocked pulls in
// all (each replica flushes its count every 2 s); bounded to 20 s.
func waitBlocked(t *testing.T, pc *harness.Portcullis, want int64) overviewAnswer {
	t.Helper()
	var o overviewAnswer
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		o = getOverview(t, pc)
		if _, total := o.blocked(); total == want {
			return o
		}
		if time.Now().After(deadline) {
			t.Fatalf("overview of %s counts %+v blocked pulls after 20 s, want %d in all", pc.URL, o.Blocked, want)
		}
	}
}

// Pulls refused by the gate show in the overview by reason, and its
// verdict counts are those of the pulls made: one image allowed, one
// blocked three times.
func TestOverviewCountsBlockedPullsAndVerdicts(t *testing.T) {
	g := gateSetupWithUpstream(t, blockingPolicy)
	host := strings.TrimPrefix(g.pc.URL, "http://")
	g.up.Push(t, "library/clean", "1", testregistryImage(t, 4096)) // no packages: nothing to find
	if out, err := exec.Command("go", "tool", "crane", "manifest", "--insecure", host+"/library/clean:1").CombinedOutput(); err != nil {
		t.Fatalf("crane: the clean image was refused: %v\n%s", err, out)
	}
	for i := range 3 {
		out, err := exec.Command("go", "tool", "crane", "manifest", "--insecure", host+"/alpine:3.16.9").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "DENIED") {
			t.Fatalf("pull %d of the vulnerable image: %v\n%s", i, err, out)
		}
	}
	o := waitBlocked(t, g.pc, 3)
	if byCode, _ := o.blocked(); byCode["VULNERABLE"] != 3 {
		t.Errorf("blocked by reason %v, want VULNERABLE 3", byCode)
	}
	if want := map[string]int{"allow": 1, "warn": 0, "block": 1, "pending": 0}; fmt.Sprint(o.Verdicts) != fmt.Sprint(want) {
		t.Errorf("verdicts %v, want %v", o.Verdicts, want)
	}
	if len(o.Top) == 0 || o.Top[0].ID != "ALPINE-CVE-2023-42366" || o.Top[0].Images != 1 {
		t.Errorf("top vulnerabilities %+v, want ALPINE-CVE-2023-42366 in 1 image", o.Top)
	}
	if o.DBState != "ok" || o.DBVersion == "" || o.CacheMisses == 0 {
		t.Errorf("database %q %q, cache %d hits %d misses", o.DBState, o.DBVersion, o.CacheHits, o.CacheMisses)
	}
	if len(o.Recent) != 2 || o.Recent[0].To == "" {
		t.Errorf("recent changes %+v, want the two first verdicts", o.Recent)
	}
}

// Two replicas sharing a redis-server count each other's blocked pulls.
func TestClusterOverviewCountsEveryReplicasBlockedPulls(t *testing.T) {
	up := startUpstream(t)
	c := newCluster(t, up)
	// A rule that blocks any image of more than one layer: no vulnerability
	// database needed.
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(`
rules:
  - name: one-layer-only
    mode: enforce
    size: {max_layers: 1}
    on_unscanned: {wait: 30s, then: block}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	base, err := os.ReadFile(c.config)
	if err != nil {
		t.Fatal(err)
	}
	c.config = writeConfig(t, string(base)+"policy: "+policyFile+"\n")
	a, b := c.start(t), c.start(t)
	img := testregistry.RandomImage(t, 2, 2048, types.OCIManifestSchema1)
	d := up.Push(t, "team/app", "1", img)
	pulls := []struct {
		pc *harness.Portcullis
		n  int
	}{{a, 2}, {b, 3}}
	for _, p := range pulls {
		for i := range p.n {
			r := do(t, "GET", p.pc.URL+"/v2/up.test/team/app/manifests/"+d.String(), "Accept", "application/vnd.oci.image.manifest.v1+json")
			if r.status != http.StatusForbidden {
				t.Fatalf("pull %d through %s: %d %s, want 403", i, p.pc.URL, r.status, r.body)
			}
		}
	}
	for _, pc := range []*harness.Portcullis{a, b} {
		o := waitBlocked(t, pc, 5)
		byCode, _ := o.blocked()
		if byCode["TOO_MANY_LAYERS"] != 5 {
			t.Errorf("%s counts blocked pulls %v, want TOO_MANY_LAYERS 5", pc.URL, byCode)
		}
		if o.Verdicts["block"] != 1 {
			t.Errorf("%s counts verdicts %v, want one block", pc.URL, o.Verdicts)
		}
	}
}
