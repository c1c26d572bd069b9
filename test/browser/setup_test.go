package browser

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/fixtures"
	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

// dashboardPolicy decides the real Alpine image (one known vulnerability,
// ALPINE-CVE-2023-42366) by repository: blocked in library/, warned in
// team/, allowed elsewhere; signed/ needs a signature by the test's key.
const dashboardPolicy = `
rules:
  - name: strict
    match: {upstreams: [docker.io], repositories: ["library/**"]}
    mode: enforce
    vulnerabilities: {block: UNKNOWN}
    on_unscanned: {wait: 30s, then: block}
    on_error: block
  - name: lenient
    match: {upstreams: [docker.io], repositories: ["team/**"]}
    mode: warn
    vulnerabilities: {block: UNKNOWN}
    on_unscanned: {wait: 30s, then: block}
    on_error: block
  - name: signed-only
    match: {upstreams: [docker.io], repositories: ["signed/**"]}
    mode: enforce
    signature: {required: true, keys: [PUBKEY], tlog: false}
    on_unscanned: {wait: 30s, then: block}
    on_error: block
  - name: lax
    match: {upstreams: [docker.io]}
    mode: enforce
    on_unscanned: {wait: 30s, then: block}
    on_error: block
`

// The vulnerability every Alpine pull finds, and its CVE alias.
const (
	alpineVuln  = "ALPINE-CVE-2023-42366"
	alpineAlias = "CVE-2023-42366"
)

// site is a running portcullis with its dashboard and what was pulled
// through it.
type site struct {
	pc       *harness.Portcullis
	up       *testregistry.Registry
	ui       string // base URL of the pages (http://host:port, no /ui/)
	pullHost string // host:port clients pull from

	alpine, signed, unsigned string // digests
}

// startSite starts the upstream and portcullis of contract 5 (ui-design.md):
// the Alpine image allowed, warned and blocked by repository, one image
// signed with a key pair made here and one unsigned, a vulnerability
// database imported, the UI open (no api.tokens_file).
func startSite(t *testing.T) *site {
	t.Helper()
	bin := harness.BuildPortcullis(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	importAlpineDB(t, bin, data)

	up := testregistry.Start(t)
	alpine := pushAlpine(t, up, "library/alpine", "team/alpine", "mirror/alpine")
	s := &site{up: up, alpine: alpine.String()}
	s.signed = up.Push(t, "signed/app", "signed", testregistry.RandomImage(t, 1, 512, types.OCIManifestSchema1)).String()
	s.unsigned = up.Push(t, "signed/app", "unsigned", testregistry.RandomImage(t, 1, 512, types.OCIManifestSchema1)).String()
	pub := fixtures.SignWithKey(t, up, "signed/app", s.signed)

	policy := writeFile(t, dir, "policy.yaml", strings.ReplaceAll(dashboardPolicy, "PUBKEY", pub))
	cfg := writeFile(t, dir, "portcullis.yaml", "default_upstream: docker.io\nupstreams: [{name: docker.io, url: "+up.URL()+"}]\npolicy: "+policy+"\n")
	s.pc = harness.StartPortcullis(t, bin, "--config", cfg, "--data", data)
	s.ui = s.pc.URL
	s.pullHost = strings.TrimPrefix(s.pc.URL, "http://")

	// Each pull waits for the evaluation (on_unscanned: wait) and records
	// the repository's verdict; blocked pulls fail.
	for _, p := range []struct {
		ref     string
		allowed bool
	}{
		{"library/alpine:3.16.9", false},
		{"team/alpine:3.16.9", true},
		{"mirror/alpine:3.16.9", true},
		{"signed/app:signed", true},
		{"signed/app:unsigned", false},
	} {
		s.pull(t, p.ref, p.allowed)
	}
	// Refused pulls reach the shared counters every few seconds: the
	// pages are looked at once they have.
	s.awaitBlockedCounted(t, "VULNERABLE", "UNSIGNED")
	return s
}

// awaitBlockedCounted waits (bounded) until the overview counts a refused
// pull for each code.
func (s *site) awaitBlockedCounted(t *testing.T, codes ...string) {
	t.Helper()
	var counted map[string]int64
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(s.pc.URL + "/api/v1/overview")
		if err != nil {
			t.Fatal(err)
		}
		var ov struct {
			Blocked []struct {
				Code  string `json:"code"`
				Count int64  `json:"count"`
			} `json:"blocked_last_24h"`
		}
		err = json.NewDecoder(resp.Body).Decode(&ov)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("overview: %v", err)
		}
		counted = map[string]int64{}
		for _, b := range ov.Blocked {
			counted[b.Code] = b.Count
		}
		if !slices.ContainsFunc(codes, func(c string) bool { return counted[c] == 0 }) {
			return
		}
	}
	t.Fatalf("blocked pulls not counted within 15 s: %v, want %v", counted, codes)
}

// pull fetches ref's manifest through portcullis with crane and checks
// that the gate let it through, or not.
func (s *site) pull(t *testing.T, ref string, allowed bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "tool", "crane", "manifest", "--insecure", s.pullHost+"/"+ref).CombinedOutput()
	if (err == nil) != allowed {
		t.Fatalf("crane manifest %s: %v (want allowed=%v)\n%s", ref, err, allowed, out)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// importAlpineDB imports the Alpine OSV records into data with the CLI.
func importAlpineDB(t *testing.T, bin, data string) {
	t.Helper()
	_, osvDir := fixtures.Alpine(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, bin, "db", "import", "--data", data, osvDir).CombinedOutput(); err != nil {
		t.Fatalf("db import: %v\n%s", err, out)
	}
}

// pushAlpine pushes the Alpine image as <repo>:3.16.9 for each repo.
func pushAlpine(t *testing.T, up *testregistry.Registry, repos ...string) v1.Hash {
	t.Helper()
	archive, _ := fixtures.Alpine(t)
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	var d v1.Hash
	for _, repo := range repos {
		d = up.Push(t, repo, "3.16.9", img)
	}
	return d
}
