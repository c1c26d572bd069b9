package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/portcullis/portcullis/test/clamdserver"
	"github.com/portcullis/portcullis/test/harness"
)

// filesImage is an image whose one layer holds files (path in the image
// without the leading slash → content).
func filesImage(t *testing.T, files map[string][]byte) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o755, Size: int64(len(body)), ModTime: time.Unix(0, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		t.Fatal(err)
	}
	base, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers"},
		Created: v1.Time{Time: time.Now().UTC().Truncate(time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// scannedImageSetup serves img as <repo>:1 behind a portcullis whose
// database holds what db import takes from dbDir (OSV records, hash
// signatures), with the scan and policy settings given ("" for none). scan
// runs 'portcullis scan' of the image on the same data directory.
func scannedImageSetup(t *testing.T, dbDir, repo, scanYAML, policyYAML string, img v1.Image) (pc *harness.Portcullis, digest string, scan func(args ...string) ([]byte, error)) {
	t.Helper()
	bin := harness.BuildPortcullis(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if out, err := runBinary(t, bin, "db", "import", "--data", data, dbDir); err != nil {
		t.Fatalf("db import: %v\n%s", err, out)
	}
	up := startUpstream(t)
	d := up.Push(t, repo, "1", img)
	cfg := "default_upstream: docker.io\nupstreams: [{name: docker.io, url: " + up.URL() + "}]\n" + scanYAML
	if policyYAML != "" {
		policyFile := filepath.Join(dir, "policy.yaml")
		if err := os.WriteFile(policyFile, []byte(policyYAML), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg += "policy: " + policyFile + "\n"
	}
	cfgFile := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	scan = func(args ...string) ([]byte, error) {
		return exec.Command(bin, append([]string{"scan", "--data", data}, append(args, up.Host()+"/"+repo+":1")...)...).CombinedOutput()
	}
	return harness.StartPortcullis(t, bin, "--config", cfgFile, "--data", data), d.String(), scan
}

// blockedOnceScanned pulls <repo>:1 until the stored verdict refuses it
// (bounded) and returns the refusal's message.
func blockedOnceScanned(t *testing.T, pc *harness.Portcullis, repo string) string {
	t.Helper()
	var r response
	for i := 0; ; i++ {
		r = do(t, "GET", pc.URL+"/v2/"+repo+"/manifests/1")
		if r.status != http.StatusOK || i == 50 {
			break
		}
		time.Sleep(200 * time.Millisecond) // the verdict is stored right after the scan
	}
	return wantError(t, r, http.StatusForbidden, "DENIED")
}

// A file whose hash a ClamAV hash signature names (db import of a .hsb) is
// a malware finding, with its path, and the image is refused under the
// default policy once scanned; a file of another size is not even hashed
// (the signature's size does not match), and gives nothing.
func TestKnownBadFileBlockedByHashSignature(t *testing.T) {
	evil := make([]byte, 4096)
	rand.Read(evil)
	sigDir := t.TempDir()
	sig := fmt.Sprintf("%x:%d:Portcullis.Test.Evil\n", sha256.Sum256(evil), len(evil))
	if err := os.WriteFile(filepath.Join(sigDir, "feed.hsb"), []byte(sig), 0o600); err != nil {
		t.Fatal(err)
	}
	pc, d, scan := scannedImageSetup(t, sigDir, "library/app", "", "", filesImage(t, map[string][]byte{
		"usr/bin/evil": evil,
		"usr/bin/fine": append(evil[:len(evil):len(evil)], 'x'),
	}))
	do(t, "GET", pc.URL+"/v2/library/app/manifests/1") // starts the scan (on_unscanned: allow)
	if got := scanKinds(t, pc, d); len(got) != 1 || got[0] != "Portcullis.Test.Evil malware CRITICAL" {
		t.Fatalf("findings %v", got)
	}
	if msg := blockedOnceScanned(t, pc, "library/app"); !strings.Contains(msg, "Portcullis.Test.Evil") || !strings.Contains(msg, "/usr/bin/evil") {
		t.Fatalf("block message %q names neither the signature nor the file", msg)
	}
	// 'portcullis scan' checks the same signatures.
	out, err := scan("--format", "json")
	if err != nil || !strings.Contains(string(out), `"kind": "malware"`) || !strings.Contains(string(out), `"path": "/usr/bin/evil"`) {
		t.Fatalf("portcullis scan: %v\n%s", err, out)
	}
}

// With scan.clamd set, every file is streamed to a real clamd: a body
// signature finds the EICAR test file inside a larger file (no hash
// signature could), and the image is refused.
func TestClamdFindsMalware(t *testing.T) {
	clamd := clamdserver.Start(t, clamdserver.Config{Signatures: clamdserver.BodySignatures()})
	body := append(append([]byte("#!/bin/sh\n# "), clamdserver.EICAR()...), "\nexit 0\n"...)
	pc, d, _ := scannedImageSetup(t, "testdata/malicious", "library/app", "scan: {clamd: "+clamd.TCPURL()+"}\n", "",
		filesImage(t, map[string][]byte{"usr/local/bin/run.sh": body, "etc/motd": []byte("hello\n")}))
	do(t, "GET", pc.URL+"/v2/library/app/manifests/1")
	want := clamdserver.BodySignatureName + ".UNOFFICIAL"
	if got := scanKinds(t, pc, d); len(got) != 1 || got[0] != want+" malware CRITICAL" {
		t.Fatalf("findings %v, want %s", got, want)
	}
	if msg := blockedOnceScanned(t, pc, "library/app"); !strings.Contains(msg, want) || !strings.Contains(msg, "/usr/local/bin/run.sh") {
		t.Fatalf("block message %q", msg)
	}
}

// A file over scan.clamd_max_file is not sent to clamd, so the EICAR file
// padded past it goes unseen while the small one is found; the skip is
// counted on /metrics, the only place an operator can see it.
func TestClamdSkippedFilesAreCounted(t *testing.T) {
	clamd := clamdserver.Start(t, clamdserver.Config{Signatures: clamdserver.BodySignatures()})
	small := append(append([]byte("#!/bin/sh\n# "), clamdserver.EICAR()...), "\nexit 0\n"...)
	big := append(append([]byte(nil), small...), bytes.Repeat([]byte("#\n"), 1024)...)
	pc, d, _ := scannedImageSetup(t, "testdata/malicious", "library/app", "scan: {clamd: "+clamd.TCPURL()+", clamd_max_file: 1KiB}\n", "",
		filesImage(t, map[string][]byte{"usr/local/bin/run.sh": small, "opt/big/run.sh": big}))
	do(t, "GET", pc.URL+"/v2/library/app/manifests/1")
	want := clamdserver.BodySignatureName + ".UNOFFICIAL malware CRITICAL"
	if got := scanKinds(t, pc, d); len(got) != 1 || got[0] != want {
		t.Fatalf("findings %v, want only %s (the small file's)", got, want)
	}
	if got := metricValue(scrapeMetrics(t, pc.URL), "portcullis_clamd_skipped_files_total", nil); got != 1 {
		t.Fatalf("portcullis_clamd_skipped_files_total %v, want 1", got)
	}
}

// clamd down is an evaluation error, never a pass: the scan fails and says
// why, and a rule's on_error decides (here: block).
func TestClamdDownFailsTheScan(t *testing.T) {
	clamd := clamdserver.Start(t, clamdserver.Config{Signatures: clamdserver.BodySignatures()})
	pc, d, _ := scannedImageSetup(t, "testdata/malicious", "library/app", "scan: {clamd: "+clamd.TCPURL()+"}\n", `
rules:
  - name: strict
    mode: enforce
    on_error: block
    on_unscanned: {wait: 30s, then: block}
`, filesImage(t, map[string][]byte{"etc/motd": []byte("hello\n")}))
	clamd.Stop()
	r := do(t, "GET", pc.URL+"/v2/library/app/manifests/1")
	wantError(t, r, http.StatusForbidden, "DENIED")
	s := do(t, "GET", pc.URL+"/api/v1/scans/"+d)
	var rec struct {
		State string `json:"state"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(s.body, &rec); err != nil || rec.State != "failed" || !strings.Contains(rec.Error, "clamd") {
		t.Fatalf("scan record %d %s (%v), want failed naming clamd", s.status, s.body, err)
	}
}
