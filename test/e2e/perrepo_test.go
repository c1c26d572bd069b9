package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/fixtures"
	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

// The same Alpine image (one known vulnerability) under a strict
// repository and under a copy a lax rule covers.
const perRepoPolicy = `
rules:
  - name: strict
    match: {upstreams: [docker.io], repositories: ["library/**"]}
    mode: enforce
    vulnerabilities: {block: UNKNOWN}
    on_unscanned: {wait: 30s, then: block}
    on_error: block
  - name: lax
    match: {upstreams: [docker.io]}
    mode: enforce
    on_unscanned: {wait: 30s, then: block}
    on_error: block
`

type perRepo struct {
	pc              *harness.Portcullis
	manifest, layer string
}

func perRepoSetup(t *testing.T) perRepo {
	t.Helper()
	bin := harness.BuildPortcullis(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	importAlpineDB(t, bin, data)
	up := startUpstream(t)
	img, d := pushAlpine(t, up)
	up.Push(t, "mirror/alpine", "3.16.9", img)
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(perRepoPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(cfg, []byte("default_upstream: docker.io\nupstreams: [{name: docker.io, url: "+up.URL()+"}]\npolicy: "+policyFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return perRepo{pc: harness.StartPortcullis(t, bin, "--config", cfg, "--data", data), manifest: d.String(), layer: layers(t, img)[0].String()}
}

const manifestAccept = "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json"

// A digest's verdict is the one of the rule matching the repository the
// request names, in whichever order the repositories are pulled: a copy of
// a blocked image in a laxer repository opens nothing in the strict one
// (by tag, by digest, or layer by layer), and the strict verdict does not
// spill over onto the copy.
func TestVerdictsFollowTheRequestedRepository(t *testing.T) {
	strictWants := func(t *testing.T, s perRepo) {
		t.Helper()
		for _, path := range []string{"/v2/library/alpine/manifests/3.16.9", "/v2/library/alpine/manifests/" + s.manifest} {
			msg := wantError(t, do(t, "GET", s.pc.URL+path, "Accept", manifestAccept), 403, "DENIED")
			if !strings.Contains(msg, "library/alpine") || !strings.Contains(msg, "CVE-2023-42366") {
				t.Errorf("%s: block message %q names neither the repository nor the vulnerability", path, msg)
			}
		}
		wantError(t, do(t, "GET", s.pc.URL+"/v2/library/alpine/blobs/"+s.layer), 403, "DENIED")
	}
	laxWants := func(t *testing.T, s perRepo) {
		t.Helper()
		for _, path := range []string{"/v2/mirror/alpine/manifests/3.16.9", "/v2/mirror/alpine/manifests/" + s.manifest, "/v2/mirror/alpine/blobs/" + s.layer} {
			if r := do(t, "GET", s.pc.URL+path, "Accept", manifestAccept); r.status != 200 {
				t.Errorf("%s: %d %s, want 200", path, r.status, r.body)
			}
		}
	}
	t.Run("lax then strict", func(t *testing.T) {
		s := perRepoSetup(t)
		laxWants(t, s)
		strictWants(t, s)
		// A real client sees the same.
		host := strings.TrimPrefix(s.pc.URL, "http://")
		if out, err := runCrane(t, "manifest", "--insecure", host+"/library/alpine:3.16.9"); err == nil {
			t.Fatalf("crane got the strict repository's manifest:\n%s", out)
		}
		if out, err := runCrane(t, "manifest", "--insecure", host+"/mirror/alpine:3.16.9"); err != nil {
			t.Fatalf("crane: %v\n%s", err, out)
		}
	})
	t.Run("strict then lax", func(t *testing.T) {
		s := perRepoSetup(t)
		strictWants(t, s)
		laxWants(t, s)
		strictWants(t, s)
	})
	t.Run("the API shows each repository's verdict", func(t *testing.T) {
		s := perRepoSetup(t)
		laxWants(t, s)
		strictWants(t, s)
		for repo, want := range map[string]string{"docker.io/library/alpine": `"verdict": "block"`, "docker.io/mirror/alpine": `"verdict": "allow"`} {
			r := do(t, "GET", s.pc.URL+"/api/v1/scans/"+s.manifest+"?repository="+repo)
			if r.status != 200 || !strings.Contains(string(r.body), want) || !strings.Contains(string(r.body), `"verdictIn": "`+repo+`"`) {
				t.Errorf("%s: %d %s, want %s", repo, r.status, r.body, want)
			}
		}
	})
}

func runCrane(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	return exec.CommandContext(t.Context(), "go", append([]string{"tool", "crane"}, args...)...).CombinedOutput()
}

// Signatures are looked up in the repository the request names: an image
// signed in one repository is unsigned in another that holds a copy.
func TestSignatureRuleSatisfiedInOneRepositoryOnly(t *testing.T) {
	up := startUpstream(t)
	img := ociImage(t, 512)
	d := up.Push(t, "team/app", "1.0", img).String()
	up.Push(t, "team/copy", "1.0", img)
	pub := fixtures.SignWithKey(t, up, "team/app", d)
	pc := signedOnlyMirror(t, up, pub)
	for _, tc := range []struct {
		repo   string
		status int
	}{{"team/app", 200}, {"team/copy", 403}, {"team/app", 200}} {
		for _, ref := range []string{"1.0", d} {
			r := do(t, "GET", pc.URL+"/v2/"+tc.repo+"/manifests/"+ref, "Accept", manifestAccept)
			if r.status != tc.status {
				t.Fatalf("%s@%s: %d %s, want %d", tc.repo, ref, r.status, r.body, tc.status)
			}
		}
	}
}

func signedOnlyMirror(t *testing.T, up *testregistry.Registry, pub string) *harness.Portcullis {
	t.Helper()
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(`
rules:
  - name: signed-only
    match: {upstreams: [up.test]}
    signature: {required: true, keys: [`+pub+`], tlog: false}
    on_unscanned: {wait: 30s, then: block}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	return withConfig(t, up, "default_upstream: up.test\nupstreams: [{name: up.test, url: UPSTREAM_URL}]\npolicy: "+policyFile+"\n")
}

// Trust inherited from a signed index is kept with the state: after a
// restart, a platform manifest pulled by digest is still covered by the
// signature on the index that lists it.
func TestIndexTrustSurvivesRestart(t *testing.T) {
	up := startUpstream(t)
	idx := testregistry.MultiArchIndex(t, types.OCIImageIndex, "linux/amd64", "linux/arm64")
	indexDigest := up.PushIndex(t, "team/multi", "1.0", idx).String()
	pub := fixtures.SignWithKey(t, up, "team/multi", indexDigest)
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	child := m.Manifests[0].Digest.String()
	pc := signedOnlyMirror(t, up, pub)
	const indexAccept = "application/vnd.oci.image.index.v1+json," + manifestAccept
	if r := do(t, "GET", pc.URL+"/v2/team/multi/manifests/1.0", "Accept", indexAccept); r.status != 200 {
		t.Fatalf("index: %d %s", r.status, r.body)
	}
	pc.Restart(t)
	if r := do(t, "GET", pc.URL+"/v2/team/multi/manifests/"+child, "Accept", manifestAccept); r.status != 200 {
		t.Fatalf("platform manifest of a signed index after a restart: %d %s", r.status, r.body)
	}
	// The index's signature covers only what it lists, and only in its
	// repository.
	other := up.Push(t, "team/multi", "other", ociImage(t, 256)).String()
	wantError(t, do(t, "GET", pc.URL+"/v2/team/multi/manifests/"+other, "Accept", manifestAccept), 403, "DENIED")
}
