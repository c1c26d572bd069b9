package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/portcullis/portcullis/test/fixtures"
	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/redisserver"
)

// alertReceiver is a webhook receiver on 127.0.0.1 that records what it
// gets by path; hang makes it hold every request until the test ends.
type alertReceiver struct {
	*httptest.Server
	mu      sync.Mutex
	got     map[string][]alertRequest
	arrived chan string
}

type alertRequest struct {
	header http.Header
	body   []byte
}

func startAlertReceiver(t *testing.T, hang bool) *alertReceiver {
	t.Helper()
	ended := make(chan struct{})
	rc := &alertReceiver{got: map[string][]alertRequest{}, arrived: make(chan string, 1000)}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		rc.mu.Lock()
		rc.got[r.URL.Path] = append(rc.got[r.URL.Path], alertRequest{r.Header.Clone(), body})
		rc.mu.Unlock()
		rc.arrived <- r.URL.Path
		if hang {
			select {
			case <-ended:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(func() { close(ended); rc.Close() })
	return rc
}

func (rc *alertReceiver) requests(path string) []alertRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got[path])
}

// waitFor waits (bounded) for a request on path whose body contains want.
func (rc *alertReceiver) waitFor(t *testing.T, path, want string, within time.Duration) alertRequest {
	t.Helper()
	deadline := time.After(within)
	for {
		for _, r := range rc.requests(path) {
			if strings.Contains(string(r.body), want) {
				return r
			}
		}
		select {
		case <-rc.arrived:
		case <-deadline:
			t.Fatalf("no alert on %s containing %q after %v; got %d", path, want, within, len(rc.requests(path)))
		}
	}
}

// A database import under a running server that makes an already-cached
// image fail its policy raises one newly_vulnerable alert listing the
// digest and both repositories it was pulled from, with the CVE and its
// fixed version, signed; a webhook whose min_severity the findings do not
// reach gets nothing; db_updated follows. The image is blocked afterwards.
func TestNewlyVulnerableAlertAfterDBImport(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	dir := t.TempDir()
	up := startUpstream(t)
	_, d := pushAlpine(t, up)
	archive, _ := fixtures.Alpine(t)
	if again, err := tarball.ImageFromPath(archive, nil); err != nil {
		t.Fatal(err)
	} else if up.Push(t, "team/alpine", "stable", again) != d {
		t.Fatal("the second repository holds another digest")
	}
	// The real Alpine record for busybox, rated HIGH (CVSS 7.5), the way
	// a database update brings news.
	_, osvDir := fixtures.Alpine(t)
	raw, err := os.ReadFile(filepath.Join(osvDir, "ALPINE-CVE-2023-42366.json"))
	if err != nil {
		t.Fatal(err)
	}
	var record map[string]any
	if err := json.Unmarshal(raw, &record); err != nil {
		t.Fatal(err)
	}
	record["severity"] = []map[string]string{{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}}
	newsDir := filepath.Join(dir, "news")
	os.Mkdir(newsDir, 0o700)
	raw, _ = json.Marshal(record)
	if err := os.WriteFile(filepath.Join(newsDir, "ALPINE-CVE-2023-42366.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}

	rc := startAlertReceiver(t, false)
	secretFile, urlFile := filepath.Join(dir, "secret"), filepath.Join(dir, "url")
	os.WriteFile(secretFile, []byte("hmac-key\n"), 0o600)
	os.WriteFile(urlFile, []byte(rc.URL+"/critical\n"), 0o600)
	policyFile := filepath.Join(dir, "policy.yaml")
	os.WriteFile(policyFile, []byte(`
rules:
  - name: no-high
    match: {}
    vulnerabilities: {block: HIGH}
    on_unscanned: {wait: 30s, then: block}
    on_error: allow
`), 0o600)
	cfg := filepath.Join(dir, "portcullis.yaml")
	os.WriteFile(cfg, []byte(`default_upstream: docker.io
upstreams: [{name: docker.io, url: `+up.URL()+`}]
policy: `+policyFile+`
public_url: https://mirror.example.com
alerts:
  webhooks:
    - name: security
      url: `+rc.URL+`/security
      format: json
      events: [newly_vulnerable, db_updated]
      secret_file: `+secretFile+`
      min_severity: HIGH
    - name: critical-only
      url_file: `+urlFile+`
      format: cloudevents
      events: [newly_vulnerable]
      min_severity: CRITICAL
`), 0o600)
	pc := harness.StartPortcullis(t, bin, "--config", cfg, "--data", filepath.Join(dir, "data"))

	// Pulled from two repositories and judged (no database: on_error allow).
	for _, path := range []string{"/v2/library/alpine/manifests/3.16.9", "/v2/team/alpine/manifests/stable"} {
		if r := do(t, "GET", pc.URL+path); r.status != 200 {
			t.Fatalf("pull %s before the import: %d %s", path, r.status, r.body)
		}
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var rec struct {
			State string `json:"state"`
		}
		if r := do(t, "GET", pc.URL+"/api/v1/scans/"+d.String()); r.status == 200 && json.Unmarshal(r.body, &rec) == nil && rec.State == "done" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no finished scan after 60 s")
		}
	}

	if out, err := runBinary(t, bin, "db", "import", "--data", pc.DataDir, newsDir); err != nil {
		t.Fatalf("db import while serving: %v\n%s", err, out)
	}
	got := rc.waitFor(t, "/security", `"type":"newly_vulnerable"`, 60*time.Second)
	m := hmac.New(sha256.New, []byte("hmac-key"))
	m.Write(got.body)
	if sig := got.header.Get("Portcullis-Signature"); sig != "sha256="+hex.EncodeToString(m.Sum(nil)) {
		t.Fatalf("signature %q does not verify", sig)
	}
	var doc struct {
		Type      string `json:"type"`
		DBVersion string `json:"dbVersion"`
		Images    []struct {
			Image      string `json:"image"`
			Digest     string `json:"digest"`
			Rule       string `json:"rule"`
			DetailsURL string `json:"detailsUrl"`
			Reasons    []struct {
				Vulnerabilities []struct {
					ID            string   `json:"id"`
					FixedVersions []string `json:"fixedVersions"`
					Severity      string   `json:"severity"`
				} `json:"vulnerabilities"`
			} `json:"reasons"`
		} `json:"images"`
	}
	if err := json.Unmarshal(got.body, &doc); err != nil {
		t.Fatal(err)
	}
	var images []string
	for _, im := range doc.Images {
		if im.Digest != d.String() || im.Rule != "no-high" || im.DetailsURL != "https://mirror.example.com/api/v1/scans/"+d.String() ||
			len(im.Reasons) == 0 || len(im.Reasons[0].Vulnerabilities) == 0 {
			t.Fatalf("image %+v in %s", im, got.body)
		}
		v := im.Reasons[0].Vulnerabilities[0]
		if v.ID != "ALPINE-CVE-2023-42366" || !slices.Equal(v.FixedVersions, []string{"1.35.0-r18"}) || v.Severity != "HIGH" {
			t.Fatalf("vulnerability %+v", v)
		}
		images = append(images, im.Image)
	}
	slices.Sort(images)
	if want := []string{"docker.io/library/alpine:3.16.9@" + d.String(), "docker.io/team/alpine:stable@" + d.String()}; !slices.Equal(images, want) {
		t.Fatalf("images %v, want %v", images, want)
	}
	rc.waitFor(t, "/security", `"type":"db_updated"`, 30*time.Second)
	// Handled after newly_vulnerable: the other webhook's turn was decided.
	if n := len(rc.requests("/critical")); n != 0 {
		t.Fatalf("the CRITICAL-only webhook got %d alerts for a HIGH finding", n)
	}
	if n := len(rc.requests("/security")); n != 2 {
		t.Fatalf("%d alerts, want newly_vulnerable and db_updated once each", n)
	}
	wantError(t, do(t, "GET", pc.URL+"/v2/team/alpine/manifests/stable"), http.StatusForbidden, "DENIED")
	if !pc.Logs.Contains(`"msg":"alert delivered"`) {
		t.Error("no delivery log line")
	}
	// Counted per webhook and result on /metrics: the two sent here, the
	// newly_vulnerable alert the CRITICAL-only webhook did not want.
	fams := scrapeMetrics(t, pc.URL)
	if n := metricValue(fams, "portcullis_alerts_total", map[string]string{"webhook": "security", "result": "sent"}); n != 2 {
		t.Errorf("portcullis_alerts_total{webhook=security,result=sent} = %v, want 2", n)
	}
	if n := metricValue(fams, "portcullis_alerts_total", map[string]string{"webhook": "critical-only", "result": "suppressed"}); n < 1 {
		t.Errorf("portcullis_alerts_total{webhook=critical-only,result=suppressed} = %v, want at least 1", n)
	}
}

// A receiver that never answers slows no pull: the block alert waits in
// its webhook's queue while pulls of other images are judged and served.
func TestHangingAlertReceiverSlowsNoPull(t *testing.T) {
	rc := startAlertReceiver(t, true)
	g := gateSetupWithUpstream(t, blockingPolicy, `alerts:
  webhooks:
    - name: chat
      url: `+rc.URL+`/chat
      format: slack
      events: [block, warn, verdict_change]`)
	wantError(t, do(t, "GET", g.pc.URL+"/v2/library/alpine/manifests/3.16.9"), http.StatusForbidden, "DENIED")
	got := rc.waitFor(t, "/chat", "ALPINE-CVE-2023-42366", 30*time.Second) // now held by the receiver
	var msg struct {
		Text   string            `json:"text"`
		Blocks []json.RawMessage `json:"blocks"`
	}
	if err := json.Unmarshal(got.body, &msg); err != nil || !strings.Contains(msg.Text, "docker.io/library/alpine:3.16.9@"+g.manifest) || len(msg.Blocks) < 2 {
		t.Fatalf("slack message %s (%v)", got.body, err)
	}

	// Images with nothing to report, pulled while the receiver hangs: each
	// is scanned, judged allow and served well within on_unscanned's 30 s
	// wait (a verdict held up behind the alert would time out to block).
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	for i := range 3 {
		tag := "clean-" + itoa(i)
		g.up.Push(t, "library/clean", tag, testregistryImage(t, 1024))
		req, _ := http.NewRequestWithContext(ctx, "GET", g.pc.URL+"/v2/library/clean/manifests/"+tag, nil)
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("pull %s while the receiver hangs: %v", tag, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("pull %s while the receiver hangs: %d (verdict %q)", tag, resp.StatusCode, resp.Header.Get("Portcullis-Verdict"))
		}
	}
	if n := len(rc.requests("/chat")); n != 1 {
		t.Fatalf("%d alerts reached the receiver, want the one it holds", n)
	}
}

// Two replicas on one Redis both see every verdict event; the lease in
// Redis makes exactly one of them send each alert.
func TestReplicasSendEachAlertOnce(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	redis := redisserver.Start(t)
	up := startUpstream(t)
	_, d := pushAlpine(t, up)
	archive, _ := fixtures.Alpine(t)
	again, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	up.Push(t, "team/alpine", "stable", again)
	rc := startAlertReceiver(t, false)
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	os.WriteFile(policyFile, []byte(blockingPolicy), 0o600)
	cfg := writeConfig(t, `default_upstream: docker.io
upstreams: [{name: docker.io, url: `+up.URL()+`}]
policy: `+policyFile+`
store: {driver: redis, redis: {addrs: [`+redis.Addr+`]}}
alerts:
  webhooks:
    - {name: ops, url: `+rc.URL+`/ops, format: json, events: [block]}
`)
	var replicas []*harness.Portcullis
	for range 2 {
		data := t.TempDir()
		importAlpineDB(t, bin, data)
		replicas = append(replicas, harness.StartPortcullis(t, bin, "--config", cfg, "--data", data))
	}
	wantError(t, do(t, "GET", replicas[0].URL+"/v2/library/alpine/manifests/3.16.9"), http.StatusForbidden, "DENIED")
	wantError(t, do(t, "GET", replicas[1].URL+"/v2/team/alpine/manifests/stable"), http.StatusForbidden, "DENIED")
	wantError(t, do(t, "GET", replicas[1].URL+"/v2/library/alpine/manifests/3.16.9"), http.StatusForbidden, "DENIED")
	rc.waitFor(t, "/ops", `"repository":"library/alpine"`, 30*time.Second)
	rc.waitFor(t, "/ops", `"repository":"team/alpine"`, 30*time.Second)
	// Give a late duplicate from the other replica time to show.
	time.Sleep(time.Second)
	var got []string
	for _, r := range rc.requests("/ops") {
		var doc struct{ Type, Image string }
		json.Unmarshal(r.body, &doc)
		got = append(got, doc.Type+" "+doc.Image)
	}
	slices.Sort(got)
	if want := []string{"block docker.io/library/alpine:3.16.9@" + d.String(), "block docker.io/team/alpine:stable@" + d.String()}; !slices.Equal(got, want) {
		t.Fatalf("alerts %v, want each once: %v", got, want)
	}
}
