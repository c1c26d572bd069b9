package e2e

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/portcullis/portcullis/test/fixtures"
	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

// importAlpineDB imports the Alpine OSV records into data with the CLI.
func importAlpineDB(t *testing.T, bin, data string) {
	t.Helper()
	_, osvDir := fixtures.Alpine(t)
	if out, err := runBinary(t, bin, "db", "import", "--data", data, osvDir); err != nil {
		t.Fatalf("db import: %v\n%s", err, out)
	}
}

// pushAlpine pushes the Alpine 3.16.9 image to up as library/alpine:3.16.9.
func pushAlpine(t *testing.T, up *testregistry.Registry) (v1.Image, v1.Hash) {
	t.Helper()
	archive, _ := fixtures.Alpine(t)
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	return img, up.Push(t, "library/alpine", "3.16.9", img)
}

type finding struct {
	ID               string   `json:"id"`
	Package          string   `json:"package"`
	InstalledVersion string   `json:"installedVersion"`
	FixedVersions    []string `json:"fixedVersions"`
}

// A pull through the mirror is scanned once, in the background, and the
// status API then lists the findings.
func TestPulledImageIsScanned(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	data := t.TempDir()
	importAlpineDB(t, bin, data)
	up := startUpstream(t)
	_, want := pushAlpine(t, up)
	pc := harness.StartPortcullis(t, bin, "--data", data, "--upstream", "docker.io="+up.URL(), "--default-upstream", "docker.io")

	// Pull with a real client, Docker-style: no registry in the name.
	out, err := exec.Command("go", "tool", "crane", "pull", "--insecure", strings.TrimPrefix(pc.URL, "http://")+"/alpine:3.16.9", filepath.Join(t.TempDir(), "img.tar")).CombinedOutput()
	if err != nil {
		t.Fatalf("crane pull: %v\n%s", err, out)
	}

	var rec struct {
		State     string          `json:"state"`
		Error     string          `json:"error"`
		DBVersion string          `json:"dbVersion"`
		Findings  []finding       `json:"findings"`
		Inventory json.RawMessage `json:"inventory"`
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := do(t, "GET", pc.URL+"/api/v1/scans/"+want.String())
		if r.status == http.StatusOK {
			if err := json.Unmarshal(r.body, &rec); err != nil {
				t.Fatal(err)
			}
			if rec.State != "pending" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished scan after 60 s: %d %s", r.status, r.body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rec.State != "done" || rec.DBVersion == "" {
		t.Fatalf("scan: state %s, error %q, db %q", rec.State, rec.Error, rec.DBVersion)
	}
	var got []string
	for _, f := range rec.Findings {
		got = append(got, f.Package+" "+f.InstalledVersion+" "+f.ID+" fixed "+strings.Join(f.FixedVersions, ","))
	}
	slices.Sort(got)
	wantFindings := []string{
		"busybox 1.35.0-r17 ALPINE-CVE-2023-42366 fixed 1.35.0-r18",
		"ssl_client 1.35.0-r17 ALPINE-CVE-2023-42366 fixed 1.35.0-r18",
	}
	if !slices.Equal(got, wantFindings) {
		t.Fatalf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantFindings, "\n"))
	}
	if !pc.Logs.Contains(`"msg":"scanned"`) {
		t.Error("no scan log line")
	}
	// Scanning read the layers through the cache: they are cached now, and a
	// second pull asks the upstream for nothing.
	up.ResetCounts()
	if out, err := exec.Command("go", "tool", "crane", "pull", "--insecure", strings.TrimPrefix(pc.URL, "http://")+"/alpine@"+want.String(), filepath.Join(t.TempDir(), "again.tar")).CombinedOutput(); err != nil {
		t.Fatalf("second pull: %v\n%s", err, out)
	}
	if n := up.Count("GET", "/blobs/"); n != 0 {
		t.Errorf("second pull fetched %d blobs upstream", n)
	}
}

// The offline contract: import, then scan an archive to SARIF, no server.
func TestScanArchiveOfflineSARIF(t *testing.T) {
	archive, osvDir := fixtures.Alpine(t)
	bin := harness.BuildPortcullis(t)
	data := t.TempDir()
	if out, err := runBinary(t, bin, "db", "import", "--data", data, osvDir); err != nil {
		t.Fatalf("db import: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "scan", "--data", data, "--archive", archive, "--format", "sarif")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scan: %v\n%s", err, out)
	}
	var sarif struct {
		Runs []struct {
			Results []struct {
				RuleID string `json:"ruleId"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(out, &sarif); err != nil {
		t.Fatalf("sarif: %v\n%s", err, out)
	}
	var ids []string
	for _, r := range sarif.Runs[0].Results {
		ids = append(ids, r.RuleID)
	}
	if !slices.Equal(ids, []string{"ALPINE-CVE-2023-42366", "ALPINE-CVE-2023-42366"}) {
		t.Fatalf("SARIF ruleIds %v", ids)
	}
	// --exit-code turns remaining findings into a failing exit status.
	cmd = exec.Command(bin, "scan", "--data", data, "--archive", archive, "--exit-code", "3")
	if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() != 3 {
		t.Fatalf("--exit-code 3: %v", err)
	}
	// And with no database, a clear error rather than a clean report.
	out, err = exec.Command(bin, "scan", "--data", t.TempDir(), "--archive", archive).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "db import") {
		t.Fatalf("scan without a database: %v %s", err, out)
	}
}

// An import while the server runs reaches stored results without any layer
// being read again.
func TestDBImportWhileServingRematches(t *testing.T) {
	_, osvDir := fixtures.Alpine(t)
	bin := harness.BuildPortcullis(t)
	up := startUpstream(t)
	_, want := pushAlpine(t, up)
	pc := harness.StartPortcullis(t, bin, "--upstream", "docker.io="+up.URL(), "--default-upstream", "docker.io")
	if r := do(t, "POST", pc.URL+"/api/v1/scans?image=alpine:3.16.9"); r.status != http.StatusAccepted && r.status != http.StatusOK {
		t.Fatalf("request scan: %d %s", r.status, r.body)
	}
	type record struct {
		State     string    `json:"state"`
		DBVersion string    `json:"dbVersion"`
		Findings  []finding `json:"findings"`
	}
	waitFor := func(what string, ok func(record) bool) record {
		t.Helper()
		var rec record
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			r := do(t, "GET", pc.URL+"/api/v1/scans/"+want.String())
			if r.status == 200 && json.Unmarshal(r.body, &rec) == nil && ok(rec) {
				return rec
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not after 60 s: %s", what, r.body)
			}
		}
	}
	rec := waitFor("scan with an empty database", func(r record) bool { return r.State == "done" })
	if len(rec.Findings) != 0 || rec.DBVersion != "" {
		t.Fatalf("empty database gave %+v", rec)
	}
	blobGets := up.Count("GET", "/blobs/")
	if out, err := runBinary(t, bin, "db", "import", "--data", pc.DataDir, osvDir); err != nil {
		t.Fatalf("db import while serving: %v\n%s", err, out)
	}
	rec = waitFor("re-match after the import", func(r record) bool { return r.DBVersion != "" })
	if len(rec.Findings) != 2 || rec.Findings[0].ID != "ALPINE-CVE-2023-42366" {
		t.Fatalf("after import: %+v", rec.Findings)
	}
	if n := up.Count("GET", "/blobs/"); n != blobGets {
		t.Errorf("re-matching fetched %d blobs", n-blobGets)
	}
	// The line comes once every re-matched result is decided again, a
	// little after the records show the new version.
	for deadline := time.Now().Add(30 * time.Second); !pc.Logs.Contains("re-matched stored inventories"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no re-match log line")
		}
	}
}
