package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/clients"
	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

// curationPolicy is an allowlist (a catch-all that blocks, and the
// approved upstreams and repositories), a denylist entry inside an
// approved upstream, tag rules and a pinned production path.
const curationPolicy = `rules:
  - name: allowlist
    match: {}
    source: block
    reason: only images from our ghcr org and Docker Hub
  - name: docker-hub
    match: {upstreams: [docker.io]}
    on_unscanned: {wait: 0s, then: allow}
    on_error: allow
  - name: deny-evil
    match: {upstreams: [docker.io], repositories: [library/evil]}
    source: block
    reason: known bad image
  - name: our-org
    match: {upstreams: [ghcr.io], repositories: ["acme/**"]}
    reason: pin a release
    tags: {block: [latest, "*-rc*"]}
    on_unscanned: {wait: 0s, then: allow}
    on_error: allow
  - name: prod
    match: {upstreams: [ghcr.io], repositories: ["acme/prod/**"]}
    tags: {require_digest: true}
    on_unscanned: {wait: 0s, then: allow}
    on_error: allow
  - name: trial
    mode: warn
    match: {upstreams: [ghcr.io], repositories: ["trial/**"]}
    source: block
    reason: on trial until review
    on_unscanned: {wait: 0s, then: allow}
    on_error: allow
`

// crane runs crane against the mirror and returns its combined output.
func crane(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "go", append([]string{"tool", "crane"}, args...)...).CombinedOutput()
	return string(out), err
}

// TestCuration: refused sources and tags are answered 403 DENIED naming
// the rule and its reason, to crane (path prefix and default upstream),
// to containerd (?ns=) and to the resolving API, with no request to the
// upstream; a digest cached through an approved repository is refused
// through a blocked one; require_digest leaves an index and its children
// pullable by digest; and the refusals are summarised in the audit log.
func TestCuration(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	hub, ghcr := startUpstream(t), startUpstream(t)
	img := ociImage(t, 512)
	approved := hub.Push(t, "library/nginx", "1.27", img).String()
	hub.Push(t, "library/evil", "1.0", img) // the same bytes as nginx
	ghcr.Push(t, "acme/app", "1.0", img)
	ghcr.Push(t, "acme/app", "latest", img)
	ghcr.Push(t, "acme/app", "2.0-rc1", img)
	ghcr.Push(t, "other/app", "1.0", img)
	ghcr.Push(t, "trial/app", "1.0", img)
	idx := testregistry.MultiArchIndex(t, types.OCIImageIndex, "linux/amd64", "linux/arm64")
	indexDigest := ghcr.PushIndex(t, "acme/prod/app", "1.0", idx).String()
	layer := layers(t, img)[0].String()

	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(curationPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(cfg, []byte("default_upstream: docker.io\nupstreams:\n  - {name: docker.io, url: "+hub.URL()+"}\n  - {name: ghcr.io, url: "+ghcr.URL()+"}\npolicy: "+policyFile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pc := harness.StartPortcullis(t, bin, "--config", cfg, "--data", filepath.Join(dir, "data"))
	host := strings.TrimPrefix(pc.URL, "http://")

	// The approved repository pulls, and its layer is now cached.
	if out, err := crane(t, "pull", "--insecure", host+"/library/nginx:1.27", filepath.Join(t.TempDir(), "nginx.tar")); err != nil {
		t.Fatalf("crane pull of an approved image: %v\n%s", err, out)
	}
	hub.ResetCounts()
	ghcr.ResetCounts()

	// Denylist: refused to crane, by tag and by the digest already cached
	// through library/nginx, and layer by layer.
	const evilMsg = `portcullis: docker.io/library/evil is not an approved source (rule "deny-evil": known bad image)`
	out, err := crane(t, "manifest", "--insecure", host+"/library/evil:1.0")
	if err == nil || !strings.Contains(out, "DENIED") || !strings.Contains(out, evilMsg) {
		t.Errorf("crane manifest of a denied repository: %v\n%s", err, out)
	}
	for _, path := range []string{
		"/v2/library/evil/manifests/" + approved, "/v2/docker.io/library/evil/manifests/" + approved,
		"/v2/library/evil/blobs/" + layer, "/v2/library/evil/tags/list", "/v2/library/evil/referrers/" + approved,
		"/v2/library/evil/blobs/" + layer + "?ns=docker.io",
	} {
		if msg := wantError(t, do(t, "GET", pc.URL+path, "Accept", manifestAccept), http.StatusForbidden, "DENIED"); msg != evilMsg {
			t.Errorf("%s: %q, want %q", path, msg, evilMsg)
		}
	}
	// Allowlist: another ghcr.io organisation is not an approved source,
	// through the path prefix and through containerd's mirror path.
	const otherMsg = `portcullis: ghcr.io/other/app is not an approved source (rule "allowlist": only images from our ghcr org and Docker Hub)`
	out, err = crane(t, "manifest", "--insecure", host+"/ghcr.io/other/app:1.0")
	if err == nil || !strings.Contains(out, otherMsg) {
		t.Errorf("crane manifest of an unapproved source: %v\n%s", err, out)
	}
	ctrd := clients.StartContainerd(t)
	hosts := t.TempDir()
	clients.WriteHostsToml(t, hosts, "ghcr.io", pc.URL)
	if out, err := ctrd.Pull(t.Context(), t, hosts, "ghcr.io/other/app:1.0"); err == nil || !strings.Contains(out, "403") {
		t.Errorf("ctr pulled an unapproved source: %v\n%s", err, out)
	}
	if !pc.Logs.Contains(`"query":"ns=ghcr.io"`) || !pc.Logs.Contains(`DENIED: `+strings.ReplaceAll(otherMsg, `"`, `\"`)) {
		t.Errorf("the containerd request was not refused by curation:\n%s", pc.Logs.String())
	}
	// Tag rules, through crane and containerd.
	out, err = crane(t, "manifest", "--insecure", host+"/ghcr.io/acme/app:latest")
	if err == nil || !strings.Contains(out, `tag "latest" is blocked (rule "our-org" blocks tags latest, *-rc*: pin a release)`) {
		t.Errorf("crane manifest of a blocked tag: %v\n%s", err, out)
	}
	if out, err := ctrd.Pull(t.Context(), t, hosts, "ghcr.io/acme/app:2.0-rc1"); err == nil || !strings.Contains(out, "403") {
		t.Errorf("ctr pulled a blocked tag: %v\n%s", err, out)
	}
	out, err = crane(t, "manifest", "--insecure", host+"/ghcr.io/acme/prod/app:1.0")
	if err == nil || !strings.Contains(out, `pull by tag "1.0" refused: pull by digest (@sha256:…) (rule "prod" requires a digest)`) {
		t.Errorf("crane manifest by tag under require_digest: %v\n%s", err, out)
	}
	// The resolving API (admission, CI) refuses the same way.
	r := do(t, "GET", pc.URL+"/api/v1/images?ref=ghcr.io/other/app:1.0")
	if r.status != http.StatusForbidden || !strings.Contains(string(r.body), `rule \"allowlist\": only images from our ghcr org and Docker Hub`) {
		t.Errorf("API resolve of an unapproved source: %d %s", r.status, r.body)
	}
	// None of it reached an upstream: no token, no HEAD, no GET.
	if n := hub.Count("", "/v2/"); n != 0 {
		t.Errorf("refused requests reached docker.io's upstream %d times", n)
	}
	if n := ghcr.Count("", "/v2/"); n != 0 {
		t.Errorf("refused requests reached ghcr.io's upstream %d times", n)
	}
	if n := hub.TokenRequests() + ghcr.TokenRequests(); n != 0 {
		t.Errorf("%d token requests for refused pulls", n)
	}

	// Allowed: an approved tag, and the pinned index by digest with its
	// platform manifests (crane and containerd pull the children by digest).
	if out, err := crane(t, "manifest", "--insecure", host+"/ghcr.io/acme/app:1.0"); err != nil {
		t.Errorf("crane manifest of an approved tag: %v\n%s", err, out)
	}
	if out, err := crane(t, "pull", "--insecure", "--platform", "linux/arm64", host+"/ghcr.io/acme/prod/app@"+indexDigest, filepath.Join(t.TempDir(), "prod.tar")); err != nil {
		t.Errorf("crane pull by digest under require_digest: %v\n%s", err, out)
	}
	if out, err := ctrd.Pull(t.Context(), t, hosts, "ghcr.io/acme/prod/app@"+indexDigest); err != nil {
		t.Errorf("ctr pull by digest under require_digest: %v\n%s", err, out)
	}

	// Under warn mode a refused source is served with the warning, and
	// its verdict in the status API has the source reason.
	r = do(t, "GET", pc.URL+"/v2/ghcr.io/trial/app/manifests/1.0", "Accept", manifestAccept)
	const trialMsg = `not an approved source (rule "trial": on trial until review)`
	if r.status != http.StatusOK || r.header.Get("Portcullis-Verdict") != "warn" || !strings.Contains(r.header.Get("Portcullis-Reason"), trialMsg) {
		t.Errorf("warn-mode source: %d %v", r.status, r.header)
	}
	// The rule does not wait for the scan (wait: 0s): its verdict is
	// decided and stored just after the pull.
	for i := 0; ; i++ {
		r = do(t, "GET", pc.URL+"/api/v1/images?ref=ghcr.io/trial/app:1.0")
		if r.status == http.StatusOK && strings.Contains(string(r.body), `"code":"SOURCE_BLOCKED"`) || i == 100 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"code":"SOURCE_BLOCKED"`) || !strings.Contains(string(r.body), `rule \"trial\": on trial until review`) {
		t.Errorf("status API of a warn-mode source, 10 s after the pull: %d %s", r.status, r.body)
	}

	// At shutdown the refusals are recorded in the audit log, one summary.
	if err := pc.Stop(); err != nil {
		t.Fatal(err)
	}
	if !pc.Logs.Contains(`"msg":"curation refusals recorded"`) {
		t.Errorf("no curation refusal summary at shutdown:\n%s", pc.Logs.String())
	}
}
