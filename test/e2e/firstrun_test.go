package e2e

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/fixtures"
	"github.com/portcullis/portcullis/test/harness"
)

// osvServer serves OSV exports the way osv.dev's bucket does
// (<ecosystem>/all.zip): the Alpine records of shared/testdata, an empty
// archive for every other ecosystem. Until release is closed the Alpine
// archive waits, so a test can see the server serve meanwhile.
type osvServer struct {
	*httptest.Server
	release chan struct{}

	mu       sync.Mutex
	requests int
}

func startOSVServer(t *testing.T) *osvServer {
	t.Helper()
	_, alpineDir := fixtures.Alpine(t)
	alpine := zipDir(t, alpineDir)
	empty := zipDir(t, t.TempDir())
	s := &osvServer{release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests++
		s.mu.Unlock()
		eco, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/all.zip")
		switch {
		case !ok:
			http.NotFound(w, r)
		case eco == "Alpine":
			select {
			case <-s.release:
			case <-time.After(30 * time.Second):
			case <-r.Context().Done():
				return
			}
			w.Write(alpine)
		default:
			w.Write(empty)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *osvServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// zipDir packs the .json files of dir into an all.zip.
func zipDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		w, err := zw.Create(filepath.Base(f))
		if err != nil {
			t.Fatal(err)
		}
		w.Write(raw)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// waitLog waits (at most 60 s) until the logs contain s.
func waitLog(t *testing.T, pc *harness.Portcullis, s string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !pc.Logs.Contains(s) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q after 60 s", s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// logLines are the lines of the logs that contain s.
func logLines(pc *harness.Portcullis, s string) []string {
	var out []string
	for _, l := range strings.Split(pc.Logs.String(), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// A server started with no database downloads one in the background,
// serving meanwhile, with one log line for the whole update; then it
// refreshes every vulndb.update_interval.
func TestFirstRunDownloadsTheDatabase(t *testing.T) {
	osv := startOSVServer(t)
	bin := harness.BuildPortcullis(t)
	up := startUpstream(t)
	cfg := writeConfig(t, "vulndb: {update_interval: 2s}\n")
	// StartPortcullis returns once /readyz answers: the Alpine archive is
	// still held back, so the server is ready before its download ends.
	pc := harness.StartPortcullis(t, bin, "--config", cfg, "--vulndb-source-url", osv.URL,
		"--upstream", "docker.io="+up.URL(), "--default-upstream", "docker.io")
	if r := do(t, "GET", pc.URL+"/v2/"); r.status != http.StatusOK {
		t.Fatalf("GET /v2/ while downloading: %d %s", r.status, r.body)
	}
	if lines := logLines(pc, "vulnerability database updated"); len(lines) != 0 {
		t.Fatalf("updated before the download finished: %q", lines)
	}
	close(osv.release)
	waitLog(t, pc, `"msg":"vulnerability database updated"`)
	// The start-up WARN about the missing database is not an update line.
	first := append(logLines(pc, "vulnerability database update"), logLines(pc, "download failed")...)
	if len(first) != 1 || !strings.Contains(first[0], `"sources":13`) {
		t.Errorf("want one log line for the first update, got:\n%s", strings.Join(first, "\n"))
	}
	// Refreshed every interval: a second round of requests and one more
	// line (the archives are unchanged, asked again).
	deadline := time.Now().Add(60 * time.Second)
	for len(logLines(pc, `"msg":"vulnerability database updated"`)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no second update after 60 s; %d requests", osv.count())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := osv.count(); n < 26 {
		t.Errorf("OSV server got %d requests, want at least two rounds of 13", n)
	}
	if lines := logLines(pc, "vulnerability database update"); len(lines) != len(logLines(pc, `"msg":"vulnerability database updated"`)) {
		t.Errorf("more lines than updates:\n%s", strings.Join(lines, "\n"))
	}
	if r := do(t, "GET", pc.URL+"/readyz"); r.status != http.StatusOK || string(r.body) != "ready\n" {
		t.Errorf("/readyz with a fresh database: %d %q", r.status, r.body)
	}
	pc.Stop()
	out, err := runBinary(t, bin, "db", "status", "--data", pc.DataDir)
	if err != nil || !strings.Contains(out, "Alpine") {
		t.Fatalf("db status after the first run's download: %v\n%s", err, out)
	}
}

// Offline, the first download fails with one error line that names the
// offline way: 'portcullis db import'.
func TestFirstRunOfflineNamesDBImport(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/"
	ln.Close() // nothing listens there now: connection refused
	bin := harness.BuildPortcullis(t)
	up := startUpstream(t)
	_, dgst := pushAlpine(t, up)
	pc := harness.StartPortcullis(t, bin, "--vulndb-source-url", closed, "--upstream", "docker.io="+up.URL())
	waitLog(t, pc, "vulnerability database download failed")
	// Without a database: ready, and saying why it is degraded; a WARN at
	// start; the scan record says its findings mean nothing.
	if r := do(t, "GET", pc.URL+"/readyz"); r.status != http.StatusOK || string(r.body) != "ready; degraded: vulnerability database missing\n" {
		t.Errorf("/readyz without a database: %d %q", r.status, r.body)
	}
	if !pc.Logs.Contains(`"level":"WARN","msg":"vulnerability database missing; images are not checked`) {
		t.Error("no WARN at start about the missing database")
	}
	// The default policy serves the image, tagged with the reason: no pull
	// passes unexamined without saying so.
	pullWarned := func(when string) {
		t.Helper()
		r := do(t, "GET", pc.URL+"/v2/library/alpine/manifests/3.16.9", "Accept", "application/vnd.docker.distribution.manifest.v2+json")
		if r.status != http.StatusOK || r.header.Get("Portcullis-Verdict") != "warn" || r.header.Get("Portcullis-Reason") != "vulnerability database missing" {
			t.Fatalf("pull without a database (default policy, %s): %d verdict %q reason %q %s", when,
				r.status, r.header.Get("Portcullis-Verdict"), r.header.Get("Portcullis-Reason"), r.body)
		}
	}
	pullWarned("first pull")
	var rec struct {
		State     string `json:"state"`
		DBWarning string `json:"dbWarning"`
	}
	deadline := time.Now().Add(60 * time.Second)
	for rec.State != "done" {
		if time.Now().After(deadline) {
			t.Fatalf("no finished scan after 60 s: %+v", rec)
		}
		time.Sleep(200 * time.Millisecond)
		if r := do(t, "GET", pc.URL+"/api/v1/scans/"+dgst.String()); r.status == http.StatusOK {
			json.Unmarshal(r.body, &rec)
		}
	}
	if rec.DBWarning != "vulnerability database missing" {
		t.Errorf("scan record dbWarning %q", rec.DBWarning)
	}
	pullWarned("after the scan")
	waitLog(t, pc, `"msg":"vulnerability database missing: the image's vulnerabilities are unknown"`)
	waitLog(t, pc, `"msg":"judged without a usable vulnerability database","image":"docker.io/library/alpine@`+dgst.String()+`","verdict":"warn","reason":"vulnerability database missing"`)
	lines := logLines(pc, "vulnerability database")
	var errs []string
	for _, l := range lines {
		if strings.Contains(l, `"level":"ERROR"`) {
			errs = append(errs, l)
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "portcullis db import --data "+pc.DataDir) || !strings.Contains(errs[0], "connection refused") {
		t.Fatalf("want one ERROR line naming 'portcullis db import' and the cause, got:\n%s", strings.Join(lines, "\n"))
	}
}

// A database older than vulndb.max_age tags every pull with the reason
// (warn, never block: a rule's max_db_age is the one that blocks), and
// /readyz says so.
func TestStaleDatabaseTagsPulls(t *testing.T) {
	pc, _, _ := gateSetup(t, `
rules:
  - name: critical-only
    match: {}
    mode: enforce
    vulnerabilities: {block: CRITICAL}
    on_unscanned: {wait: 30s, then: block}
    on_error: block
`, "vulndb: {max_age: 1ms, update_interval: 0}")
	r := do(t, "GET", pc.URL+"/v2/library/alpine/manifests/3.16.9", "Accept", "application/vnd.docker.distribution.manifest.v2+json")
	if r.status != http.StatusOK || r.header.Get("Portcullis-Verdict") != "warn" ||
		!strings.HasPrefix(r.header.Get("Portcullis-Reason"), "vulnerability database stale (built ") {
		t.Fatalf("pull with a stale database: %d verdict %q reason %q %s", r.status,
			r.header.Get("Portcullis-Verdict"), r.header.Get("Portcullis-Reason"), r.body)
	}
	if r := do(t, "GET", pc.URL+"/readyz"); r.status != http.StatusOK || !strings.HasPrefix(string(r.body), "ready; degraded: vulnerability database stale") {
		t.Errorf("/readyz with a stale database: %d %q", r.status, r.body)
	}
}
