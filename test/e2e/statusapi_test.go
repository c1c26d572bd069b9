package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/test/harness"
)

// statusPolicy decides the same Alpine image (one known vulnerability)
// three ways by repository: blocked in library/, warned in team/, allowed
// elsewhere.
const statusPolicy = `
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
  - name: lax
    match: {upstreams: [docker.io]}
    mode: enforce
    on_unscanned: {wait: 30s, then: block}
    on_error: block
`

// statusSetup is a portcullis whose API listens on its own port behind
// tokens, with the Alpine image pulled under three repositories and a
// two-platform index pushed (not pulled).
type statusSetup struct {
	pc                   *harness.Portcullis
	bin, api             string
	reader, admin        string // token files
	alpine, amd64, arm64 string // digests
}

func startStatusSetup(t *testing.T) statusSetup {
	t.Helper()
	bin := harness.BuildPortcullis(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	importAlpineDB(t, bin, data)
	up := startUpstream(t)
	img, d := pushAlpine(t, up)
	up.Push(t, "team/alpine", "3.16.9", img)
	up.Push(t, "mirror/alpine", "3.16.9", img)
	amd, arm := testregistryImage(t, 512), testregistryImage(t, 512)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}})
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	up.PushIndex(t, "mirror/multi", "1", idx)
	amdDigest, _ := amd.Digest()
	armDigest, _ := arm.Digest()

	write := func(name, content string) string { return writeFileIn(t, dir, name, content) }
	s := statusSetup{bin: bin, alpine: d.String(), amd64: amdDigest.String(), arm64: armDigest.String(),
		reader: write("reader.token", "reader-token-1\n"), admin: write("admin.token", "admin-token-1\n")}
	tokens := write("tokens.yaml", sha([]byte("reader-token-1"))[7:]+": {name: admission, scopes: [read]}\n"+
		sha([]byte("admin-token-1"))[7:]+": {name: ci, scopes: [read, admin]}\n")
	policyFile := write("policy.yaml", statusPolicy)
	apiAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	s.api = "http://" + apiAddr
	cfg := write("portcullis.yaml", "default_upstream: docker.io\nupstreams: [{name: docker.io, url: "+up.URL()+"}]\npolicy: "+policyFile+
		"\napi: {listen: "+apiAddr+", tokens_file: "+tokens+"}\n")
	s.pc = harness.StartPortcullis(t, bin, "--config", cfg, "--data", data)

	// Pull the image under each repository: the gate waits for the scan
	// and records each repository's verdict.
	host := strings.TrimPrefix(s.pc.URL, "http://")
	for _, repo := range []string{"library/alpine", "team/alpine", "mirror/alpine"} {
		out, err := exec.Command("go", "tool", "crane", "manifest", "--insecure", host+"/"+repo+":3.16.9").CombinedOutput()
		if (err == nil) == (repo == "library/alpine") {
			t.Fatalf("crane manifest %s: %v\n%s", repo, err, out)
		}
	}
	return s
}

func (s statusSetup) get(t *testing.T, path, tokenFile string) response {
	t.Helper()
	return s.call(t, "GET", path, tokenFile)
}

func (s statusSetup) call(t *testing.T, method, path, tokenFile string) response {
	t.Helper()
	var header []string
	if tokenFile != "" {
		tok, err := os.ReadFile(tokenFile)
		if err != nil {
			t.Fatal(err)
		}
		header = []string{"Authorization", "Bearer " + strings.TrimSpace(string(tok))}
	}
	return do(t, method, s.api+path, header...)
}

// apiErr decodes a status API error body; it must be JSON with a code and
// a message.
func apiErr(t *testing.T, r response, status int, code string) string {
	t.Helper()
	var e struct{ Code, Message string }
	if r.err != nil || r.status != status || r.header.Get("Content-Type") != "application/json" || json.Unmarshal(r.body, &e) != nil || e.Message == "" {
		t.Fatalf("want %d %s as JSON, got %d %v %s", status, code, r.status, r.err, r.body)
	}
	if code != "" && e.Code != code {
		t.Fatalf("code %q, want %q: %s", e.Code, code, r.body)
	}
	return e.Message
}

type imageAnswer struct {
	Digest, Verdict, Rule, Platform string
	Index                           string    `json:"index_digest"`
	EvaluatedAt                     time.Time `json:"evaluated_at"`
	DBVersion                       string    `json:"db_version"`
	PolicyVersion                   string    `json:"policy_version"`
	Details                         string
	Reasons                         []struct {
		Code            string
		Vulnerabilities []string
	}
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if r.err != nil || r.status >= 300 || json.Unmarshal(r.body, &v) != nil {
		t.Fatalf("%d %v %s", r.status, r.err, r.body)
	}
	return v
}

func TestStatusAPIEndToEnd(t *testing.T) {
	s := startStatusSetup(t)

	t.Run("the pull port no longer serves the API", func(t *testing.T) {
		if r := do(t, "GET", s.pc.URL+"/api/v1/images"); r.status != 404 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if r := do(t, "GET", s.pc.URL+"/metrics"); r.status != 404 {
			t.Fatalf("/metrics on the pull port: %d %s", r.status, r.body)
		}
	})

	t.Run("metrics on the API port, behind a token", func(t *testing.T) {
		apiErr(t, s.get(t, "/metrics", ""), 401, "UNAUTHORIZED")
		r := s.get(t, "/metrics", s.reader)
		if r.status != 200 || !strings.Contains(string(r.body), "portcullis_requests_total") {
			t.Fatalf("/metrics with a read token: %d %.300s", r.status, r.body)
		}
		// API calls on this port are counted too.
		s.get(t, "/api/v1/openapi.json", s.reader)
		if n := metricValue(scrapeMetricsWith(t, s.api, s.reader), "portcullis_requests_total", map[string]string{"route": "api", "code": "200"}); n < 1 {
			t.Fatalf("portcullis_requests_total{route=api,code=200} = %v", n)
		}
	})

	t.Run("tokens and scopes", func(t *testing.T) {
		apiErr(t, s.get(t, "/api/v1/images", ""), 401, "UNAUTHORIZED")
		bad := filepath.Join(t.TempDir(), "bad.token")
		os.WriteFile(bad, []byte("guess"), 0o600)
		apiErr(t, s.get(t, "/api/v1/images", bad), 401, "UNAUTHORIZED")
		apiErr(t, s.call(t, "POST", "/api/v1/scans?image=mirror/alpine:3.16.9", s.reader), 403, "FORBIDDEN")
		if r := s.call(t, "POST", "/api/v1/scans?image=mirror/alpine:3.16.9", s.admin); r.status != 200 {
			t.Fatalf("admin POST: %d %s", r.status, r.body)
		}
		for _, path := range []string{"/api/v1/openapi.json", "/api/v1/images", "/api/v1/vulnerabilities/CVE-1", "/api/v1/scans/" + s.alpine} {
			if r := s.get(t, path, s.reader); r.status != 200 {
				t.Fatalf("%s with a read token: %d %s", path, r.status, r.body)
			}
		}
	})

	t.Run("verdict by reference", func(t *testing.T) {
		for _, tc := range []struct{ ref, verdict, rule string }{
			{"alpine:3.16.9", "block", "strict"},
			{"docker.io/team/alpine:3.16.9", "warn", "lenient"},
			{"mirror/alpine:3.16.9", "allow", "lax"},
			{"mirror/alpine@" + s.alpine, "allow", "lax"},
		} {
			a := decode[imageAnswer](t, s.get(t, "/api/v1/images?ref="+url.QueryEscape(tc.ref), s.reader))
			if a.Digest != s.alpine || a.Verdict != tc.verdict || a.Rule != tc.rule || a.EvaluatedAt.IsZero() || a.DBVersion == "" || !strings.Contains(a.Details, s.alpine) {
				t.Fatalf("%s: %+v", tc.ref, a)
			}
			if tc.verdict != "allow" && (len(a.Reasons) == 0 || !slices.Contains(a.Reasons[0].Vulnerabilities, "ALPINE-CVE-2023-42366")) {
				t.Fatalf("%s: reasons %+v", tc.ref, a.Reasons)
			}
		}
	})

	t.Run("an index: the platform's manifest, evaluated on request", func(t *testing.T) {
		a := decode[imageAnswer](t, s.get(t, "/api/v1/images?ref=mirror/multi:1&platform=linux/arm64", s.reader))
		if a.Digest != s.arm64 || a.Index == "" || a.Platform != "linux/arm64/v8" || a.Verdict != "unknown" {
			t.Fatalf("%+v", a)
		}
		a = decode[imageAnswer](t, s.get(t, "/api/v1/images?ref=mirror/multi:1&evaluate=true&wait=1m", s.reader))
		if a.Digest != s.amd64 || a.Platform != "linux/amd64" || a.Verdict != "allow" || a.Rule != "lax" {
			t.Fatalf("%+v", a)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct {
			path   string
			status int
			code   string
		}{
			{"/api/v1/images?ref=library/missing:1", 404, "UNKNOWN_IMAGE"},
			{"/api/v1/images?ref=Bad/Name:1", 400, "BAD_REFERENCE"},
			{"/api/v1/images?ref=evil.example/x:1", 400, "BAD_REFERENCE"},
			{"/api/v1/images?ref=mirror/multi:1&platform=linux", 400, "BAD_REQUEST"},
			{"/api/v1/images?ref=mirror/multi:1&platform=windows/amd64", 404, "UNKNOWN_PLATFORM"},
			{"/api/v1/images?ref=mirror/alpine:3.16.9&wait=1h&evaluate=true", 400, "BAD_REQUEST"},
			{"/api/v1/images?cursor=bm90IGEgY3Vyc29y", 400, "BAD_CURSOR"},
			{"/api/v1/images?limit=1000000", 400, "BAD_REQUEST"},
			{"/api/v1/images?verdict=maybe", 400, "BAD_REQUEST"},
			{"/api/v1/scans/sha256:abc", 400, "BAD_DIGEST"},
			{"/api/v1/scans/sha256:abc/sbom", 400, "BAD_DIGEST"},
			{"/api/v1/scans/sha256:" + strings.Repeat("a", 64) + "/report", 404, "NOT_FOUND"},
			{"/api/v1/scans/" + s.alpine + "/sbom?format=xml", 400, "BAD_REQUEST"},
			{"/api/v1/vulnerabilities/not%20an%20id", 400, "BAD_REQUEST"},
			{"/api/v1/nothing", 404, "NOT_FOUND"},
		} {
			apiErr(t, s.get(t, tc.path, s.reader), tc.status, tc.code)
		}
		apiErr(t, s.call(t, "DELETE", "/api/v1/images", s.admin), 405, "METHOD_NOT_ALLOWED")
	})

	t.Run("list pages", func(t *testing.T) {
		all := decode[struct {
			Images []struct{ Digest, Upstream, Repository, Verdict string }
		}](t, s.get(t, "/api/v1/images?limit=1000", s.reader))
		if len(all.Images) < 4 {
			t.Fatalf("%+v", all)
		}
		var paged []string
		cursor := ""
		for range 20 {
			page := decode[struct {
				Images []struct{ Digest, Upstream, Repository, Verdict string }
				Next   string `json:"next_cursor"`
			}](t, s.get(t, "/api/v1/images?limit=1&cursor="+cursor, s.reader))
			for _, img := range page.Images {
				paged = append(paged, img.Digest+" "+img.Repository+" "+img.Verdict)
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
		var whole []string
		for _, img := range all.Images {
			whole = append(whole, img.Digest+" "+img.Repository+" "+img.Verdict)
		}
		if !slices.Equal(paged, whole) {
			t.Fatalf("pages of one:\n%v\none page:\n%v", paged, whole)
		}
		blocked := decode[struct {
			Images []struct{ Repository string }
		}](t, s.get(t, "/api/v1/images?verdict=block&repository=library/*&vulnerability=CVE-2023-42366", s.reader))
		if len(blocked.Images) != 1 || blocked.Images[0].Repository != "library/alpine" {
			t.Fatalf("%+v", blocked)
		}
	})

	t.Run("vulnerability lookup by alias", func(t *testing.T) {
		v := decode[struct {
			Images []struct {
				Digest       string
				Repositories []struct{ Repository, Verdict string }
			}
		}](t, s.get(t, "/api/v1/vulnerabilities/CVE-2023-42366", s.reader))
		if len(v.Images) != 1 || v.Images[0].Digest != s.alpine || len(v.Images[0].Repositories) != 3 {
			t.Fatalf("%+v", v)
		}
	})

	t.Run("SBOMs and the SARIF report", func(t *testing.T) {
		r := s.get(t, "/api/v1/scans/"+s.alpine+"/sbom", s.reader)
		cdx := decode[struct {
			BOMFormat  string `json:"bomFormat"`
			Components []any  `json:"components"`
		}](t, r)
		if r.header.Get("Content-Type") != "application/vnd.cyclonedx+json" || cdx.BOMFormat != "CycloneDX" || len(cdx.Components) == 0 {
			t.Fatalf("%s %+v", r.header.Get("Content-Type"), cdx)
		}
		r = s.get(t, "/api/v1/scans/"+s.alpine+"/sbom?format=spdx", s.reader)
		var spdx map[string]any
		if err := json.Unmarshal(r.body, &spdx); err != nil || r.header.Get("Content-Type") != "application/spdx+json" {
			t.Fatalf("%v %s", err, r.body)
		}
		// SPDX 2.3 required document fields (clause 6).
		for _, field := range []string{"spdxVersion", "dataLicense", "SPDXID", "name", "documentNamespace", "creationInfo", "packages"} {
			if spdx[field] == nil {
				t.Errorf("SPDX document lacks %s", field)
			}
		}
		if spdx["spdxVersion"] != "SPDX-2.3" || spdx["SPDXID"] != "SPDXRef-DOCUMENT" {
			t.Errorf("%v %v", spdx["spdxVersion"], spdx["SPDXID"])
		}
		r = s.get(t, "/api/v1/scans/"+s.alpine+"/report?format=sarif", s.reader)
		sarif := decode[struct {
			Version string
			Runs    []struct{ Results []struct{ RuleID string } }
		}](t, r)
		if sarif.Version != "2.1.0" || len(sarif.Runs) != 1 || !strings.Contains(string(r.body), "ALPINE-CVE-2023-42366") {
			t.Fatalf("%s", r.body)
		}
	})

	t.Run("portcullis status exit codes", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			code int
			says string
		}{
			{[]string{"status", "alpine:3.16.9", "--server", s.api, "--token-file", s.reader}, 1, "ALPINE-CVE-2023-42366"},
			{[]string{"status", "team/alpine:3.16.9", "--server", s.api, "--token-file", s.reader}, 0, "WARN"},
			{[]string{"status", "--fail-on", "warn", "team/alpine:3.16.9", "--server", s.api, "--token-file", s.reader}, 1, "WARN"},
			{[]string{"status", "mirror/alpine:3.16.9", "--server", s.api, "--token-file", s.reader}, 0, "ALLOW"},
			{[]string{"status", s.alpine, "--server", s.api, "--token-file", s.reader}, 1, "BLOCK"},
			{[]string{"status", "alpine:3.16.9", "--server", s.api}, 2, "UNAUTHORIZED"},
			{[]string{"status", "library/missing:1", "--server", s.api, "--token-file", s.reader}, 2, "UNKNOWN_IMAGE"},
			{[]string{"status", "alpine:3.16.9", "--server", "http://127.0.0.1:1", "--token-file", s.reader}, 2, "connect"},
			{[]string{"status", "--fail-on", "never", "alpine:3.16.9"}, 2, "fail-on"},
			{[]string{"status"}, 2, "usage"},
		} {
			out, code := runExit(t, s.bin, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.says) {
				t.Errorf("%v: exit %d, want %d saying %q:\n%s", tc.args, code, tc.code, tc.says, out)
			}
		}
	})

	t.Run("portcullis events follows the stream", func(t *testing.T) {
		var out harness.LogBuffer
		proc, err := harness.StartProcess(s.bin, []string{"events", "--server", s.api, "--token-file", s.reader}, nil, &out)
		if err != nil {
			t.Fatal(err)
		}
		defer proc.Kill()
		deadline := time.Now().Add(30 * time.Second)
		for !out.Contains("following events") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		// A new verdict: the arm64 manifest, evaluated on request.
		a := decode[imageAnswer](t, s.get(t, "/api/v1/images?ref=mirror/multi:1&platform=linux/arm64&evaluate=true&wait=1m", s.reader))
		if a.Verdict != "allow" {
			t.Fatalf("%+v", a)
		}
		line := "verdict docker.io/mirror/multi@" + s.arm64
		for deadline := time.Now().Add(30 * time.Second); !out.Contains(line) && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		if !out.Contains("verdict docker.io/mirror/multi@" + s.arm64 + " (none) -> allow") {
			t.Fatalf("no verdict line:\n%s", out.String())
		}
		if err := proc.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		select {
		case <-proc.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("events did not stop on interrupt")
		}
		if err := proc.ExitErr(); err != nil {
			t.Fatalf("exit after interrupt: %v\n%s", err, out.String())
		}
	})
}

// runExit runs the binary and returns its output and exit code.
func runExit(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	out, err := runBinary(t, bin, args...)
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out, 0
	case errors.As(err, &exit):
		return out, exit.ExitCode()
	}
	t.Fatalf("%v: %v", args, err)
	return "", -1
}

// With htpasswd and tokens both set, the API takes tokens only, pulls take
// Basic credentials only, and the access rules apply to a token's name
// when the API resolves a reference.
func TestAPITokensWithHtpasswd(t *testing.T) {
	up := startUpstream(t)
	img := testregistryImage(t, 1024)
	up.Push(t, "mirror/app", "1", img)
	up.Push(t, "other/app", "1", img)
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("pull-pass"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string { return writeFileIn(t, dir, name, content) }
	htpasswd := write("htpasswd", "puller:$2y"+string(hash[3:])+"\n")
	tokens := write("tokens.yaml", sha([]byte("adm-token"))[7:]+": {name: admission, scopes: [read]}\n")
	pc := withConfig(t, up, "default_upstream: up.test\nupstreams: [{name: up.test, url: UPSTREAM_URL}]\n"+
		"auth:\n  htpasswd: "+htpasswd+"\n  access:\n    - users: [admission]\n      repositories: [\"mirror/**\"]\n    - users: [puller]\n"+
		"api: {tokens_file: "+tokens+"}\n")
	bearer := []string{"Authorization", "Bearer adm-token"}
	basic := []string{"Authorization", "Basic cHVsbGVyOnB1bGwtcGFzcw=="} // puller:pull-pass

	if r := do(t, "GET", pc.URL+"/api/v1/images?ref=mirror/app:1", bearer...); r.status != 200 {
		t.Fatalf("token within its access rule: %d %s", r.status, r.body)
	}
	apiErr(t, do(t, "GET", pc.URL+"/api/v1/images?ref=other/app:1", bearer...), 403, "FORBIDDEN")
	apiErr(t, do(t, "GET", pc.URL+"/api/v1/images?ref=mirror/app:1", basic...), 401, "UNAUTHORIZED")
	if r := do(t, "GET", pc.URL+"/v2/other/app/manifests/1", append(basic, "Accept", string(types.OCIManifestSchema1))...); r.status != 200 {
		t.Fatalf("pull with Basic credentials: %d %s", r.status, r.body)
	}
	wantError(t, do(t, "GET", pc.URL+"/v2/other/app/manifests/1", bearer...), 401, "UNAUTHORIZED")
}
