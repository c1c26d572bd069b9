package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/test/clients"
	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

// gateSetup serves the real Alpine 3.16.9 image (one known vulnerability,
// severity UNKNOWN in Alpine's data) behind a portcullis with policyYAML.
func gateSetup(t *testing.T, policyYAML string, extraConfig ...string) (pc *harness.Portcullis, manifest string, layer string) {
	t.Helper()
	g := gateSetupWithUpstream(t, policyYAML, extraConfig...)
	return g.pc, g.manifest, g.layer
}

// gated is a portcullis in front of an upstream serving Alpine 3.16.9.
type gated struct {
	pc       *harness.Portcullis
	up       *testregistry.Registry
	manifest string // digest of the Alpine image
	layer    string // digest of its layer
	policy   string // the policy file
}

func gateSetupWithUpstream(t *testing.T, policyYAML string, extraConfig ...string) gated {
	t.Helper()
	bin := harness.BuildPortcullis(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	importAlpineDB(t, bin, data)
	up := startUpstream(t)
	img, d := pushAlpine(t, up)
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	l, err := ls[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(policyYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runBinary(t, bin, "policy", "check", "--config", policyFile); err != nil {
		t.Fatalf("policy check: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "portcullis.yaml")
	os.WriteFile(cfg, []byte("default_upstream: docker.io\nupstreams: [{name: docker.io, url: "+up.URL()+"}]\npolicy: "+policyFile+"\n"+strings.Join(extraConfig, "\n")+"\n"), 0o600)
	return gated{pc: harness.StartPortcullis(t, bin, "--config", cfg, "--data", data), up: up, manifest: d.String(), layer: l.String(), policy: policyFile}
}

const blockingPolicy = `
rules:
  - name: no-known-vulnerabilities
    match: {upstreams: [docker.io]}
    mode: enforce
    vulnerabilities: {block: UNKNOWN}
    on_unscanned: {wait: 30s, then: block}
    on_error: block
`

// The first pull waits for the scan, then is refused with the reasons, in
// the client's own output; the blocked digest stays blocked.
func TestBlockedImageIsRefusedWithReasons(t *testing.T) {
	pc, d, layer := gateSetup(t, blockingPolicy)
	host := strings.TrimPrefix(pc.URL, "http://")

	out, err := exec.Command("go", "tool", "crane", "manifest", "--insecure", host+"/alpine:3.16.9").CombinedOutput()
	if err == nil {
		t.Fatalf("crane got the manifest of a blocked image:\n%s", out)
	}
	t.Logf("crane prints: %s", out)
	for _, want := range []string{"DENIED", "portcullis: blocked docker.io/library/alpine@" + d, "ALPINE-CVE-2023-42366"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("crane output lacks %q:\n%s", want, out)
		}
	}
	// By digest too, and for skopeo's users.
	skopeoOut, err := clients.SkopeoCopy(t.Context(), t, "--src-tls-verify=false", "docker://"+host+"/library/alpine@"+d, "oci:"+filepath.Join(t.TempDir(), "x"))
	if err == nil || !strings.Contains(skopeoOut, "ALPINE-CVE-2023-42366") {
		t.Fatalf("skopeo: %v\n%s", err, skopeoOut)
	}
	r := do(t, "GET", pc.URL+"/v2/library/alpine/manifests/"+d)
	// The link is absolute, at the address the client used, and leads to
	// the record.
	details := pc.URL + "/api/v1/scans/" + d
	if msg := wantError(t, r, http.StatusForbidden, "DENIED"); !strings.HasSuffix(msg, "; details: "+details) {
		t.Errorf("message does not link the details: %q", msg)
	}
	if rec := do(t, "GET", details); rec.status != 200 || !strings.Contains(string(rec.body), `"verdict": "block"`) {
		t.Errorf("details link: %d %s", rec.status, rec.body)
	}
	// Nor layer by layer.
	msg := wantError(t, do(t, "GET", pc.URL+"/v2/library/alpine/blobs/"+layer), http.StatusForbidden, "DENIED")
	if !strings.Contains(msg, "blocked image "+d) || !strings.HasSuffix(msg, "; details: "+details) {
		t.Errorf("blob refusal: %q", msg)
	}
}

// In warn mode the same image is served, marked, and recorded.
func TestWarnModeServesWithHeader(t *testing.T) {
	pc, d, layer := gateSetup(t, strings.Replace(blockingPolicy, "mode: enforce", "mode: warn", 1))
	r := do(t, "GET", pc.URL+"/v2/library/alpine/manifests/3.16.9")
	if r.status != 200 || r.header.Get("Docker-Content-Digest") != d {
		t.Fatalf("warn mode: %d %s", r.status, r.body)
	}
	if r.header.Get("Portcullis-Verdict") != "warn" || !strings.Contains(r.header.Get("Portcullis-Reason"), "ALPINE-CVE-2023-42366") ||
		r.header.Get("Portcullis-Details") != pc.URL+"/api/v1/scans/"+d {
		t.Fatalf("warn headers: %v", r.header)
	}
	if b := do(t, "GET", pc.URL+"/v2/library/alpine/blobs/"+layer); b.status != 200 || sha(b.body) != layer {
		t.Fatalf("layer of a warned image: %d", b.status)
	}
	// A real client pulls it whole.
	if out, err := exec.Command("go", "tool", "crane", "pull", "--insecure", strings.TrimPrefix(pc.URL, "http://")+"/alpine:3.16.9", filepath.Join(t.TempDir(), "img.tar")).CombinedOutput(); err != nil {
		t.Fatalf("crane pull of a warned image: %v\n%s", err, out)
	}
	rec := do(t, "GET", pc.URL+"/api/v1/scans/"+d)
	if !strings.Contains(string(rec.body), `"verdict": "warn"`) {
		t.Fatalf("stored verdict: %s", rec.body)
	}
}

// Behind a load balancer the link names the public address, not the one
// the request reached.
func TestBlockLinksPublicURL(t *testing.T) {
	pc, d, _ := gateSetup(t, blockingPolicy, "public_url: https://mirror.example.com/")
	msg := wantError(t, do(t, "GET", pc.URL+"/v2/library/alpine/manifests/3.16.9"), http.StatusForbidden, "DENIED")
	if !strings.HasSuffix(msg, "; details: https://mirror.example.com/api/v1/scans/"+d) {
		t.Fatalf("message: %q", msg)
	}
}

// containerd pulls through its hosts.toml mirror are refused as well; ctr
// reports the 403 (it does not print registry error messages).
func TestBlockedImageRefusedToContainerd(t *testing.T) {
	pc, _, _ := gateSetup(t, blockingPolicy)
	ctrd := clients.StartContainerd(t)
	hosts := t.TempDir()
	clients.WriteHostsToml(t, hosts, "docker.io", pc.URL)
	out, err := ctrd.Pull(t.Context(), t, hosts, "docker.io/library/alpine:3.16.9")
	if err == nil {
		t.Fatalf("ctr pulled a blocked image:\n%s", out)
	}
	if !strings.Contains(out, "403") {
		t.Errorf("ctr output does not show the refusal:\n%s", out)
	}
	if !pc.Logs.Contains(`"status":403`) || !pc.Logs.Contains(`"query":"ns=docker.io"`) {
		t.Errorf("portcullis did not refuse the containerd request:\n%s", pc.Logs.String())
	}
}

// 'portcullis policy test' judges an image straight from its registry.
func TestPolicyTestCommand(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	data := t.TempDir()
	importAlpineDB(t, bin, data)
	up := startUpstream(t)
	pushAlpine(t, up)
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(policyFile, []byte(strings.Replace(blockingPolicy, "match: {upstreams: [docker.io]}", "match: {}", 1)), 0o600)
	cmd := exec.Command(bin, "policy", "test", "--config", policyFile, "--data", data, "--exit-code", "4", up.Host()+"/library/alpine:3.16.9")
	out, err := cmd.Output()
	if err == nil || cmd.ProcessState.ExitCode() != 4 {
		t.Fatalf("policy test of a blocked image: %v\n%s", err, out)
	}
	for _, want := range []string{"block (rule no-known-vulnerabilities", "VULNERABLE", "ALPINE-CVE-2023-42366"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Without a database the same rule cannot judge vulnerabilities: on_error.
	out, _ = exec.Command(bin, "policy", "test", "--config", policyFile, "--data", t.TempDir(), up.Host()+"/library/alpine:3.16.9").Output()
	if !strings.Contains(string(out), "EVALUATION_ERROR") {
		t.Errorf("no database: %s", out)
	}
	// A bad policy file names the line.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("rules:\n  - name: x\n    vulnerabilities: {block: SEVERE}\n"), 0o600)
	out, err = exec.Command(bin, "policy", "check", "--config", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "line 3") {
		t.Fatalf("bad policy: %v %s", err, out)
	}
}

// podman prints the reasons of a refused pull, as skopeo does (same
// containers/image library).
func TestBlockedImageRefusedToPodman(t *testing.T) {
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Fatal("podman is not installed (./test/run.sh installs it):", err)
	}
	pc, _, _ := gateSetup(t, blockingPolicy)
	dir := t.TempDir()
	// podman refuses a runroot path longer than 50 characters.
	run, err := os.MkdirTemp("/tmp", "pm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	policyJSON := filepath.Join(dir, "policy.json")
	os.WriteFile(policyJSON, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o600)
	registries := filepath.Join(dir, "registries.conf")
	os.WriteFile(registries, []byte("unqualified-search-registries = []\n"), 0o600)
	cmd := exec.CommandContext(t.Context(), podman, "--root", filepath.Join(dir, "root"), "--runroot", run,
		"--storage-driver", "vfs", "pull", "--tls-verify=false", "--signature-policy", policyJSON,
		strings.TrimPrefix(pc.URL, "http://")+"/library/alpine:3.16.9")
	cmd.Env = append(os.Environ(), "CONTAINERS_REGISTRIES_CONF="+registries)
	out, err := cmd.CombinedOutput()
	t.Logf("podman: %v\n%s", err, out)
	if err == nil {
		t.Fatalf("podman pulled a blocked image:\n%s", out)
	}
	for _, want := range []string{"denied", "portcullis: blocked docker.io/library/alpine@", "ALPINE-CVE-2023-42366"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("podman output lacks %q:\n%s", want, out)
		}
	}
}
