package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/test/harness"
)

// With no configuration at all portcullis mirrors the five public
// registries, Docker Hub by default. Nothing here contacts them.
func TestRunsWithNoConfiguration(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	pc := harness.StartPortcullis(t, bin)
	r := do(t, "GET", pc.URL+"/v2/")
	if r.status != 200 || r.header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("/v2/: %d %v", r.status, r.header)
	}
	msg := wantError(t, do(t, "GET", pc.URL+"/v2/evil.example/x/manifests/1"), 404, "NAME_UNKNOWN")
	for _, name := range []string{"docker.io", "gcr.io", "ghcr.io", "quay.io", "registry.k8s.io"} {
		if !strings.Contains(msg, name) {
			t.Errorf("default upstreams lack %s: %q", name, msg)
		}
	}
	if !pc.Logs.Contains(`"default_upstream":"docker.io"`) {
		t.Errorf("default upstream is not docker.io:\n%s", pc.Logs.String())
	}
	out, err := runBinary(t, bin, "version")
	if err != nil || !strings.HasPrefix(out, "portcullis ") {
		t.Fatalf("version: %q %v", out, err)
	}
}

// Flags win over the configuration file.
func TestFlagsOverrideConfigFile(t *testing.T) {
	fileUp, flagUp := startUpstream(t), startUpstream(t)
	fromFile := fileUp.Push(t, "team/app", "1.0", ociImage(t, 256))
	fromFlag := flagUp.Push(t, "team/app", "1.0", ociImage(t, 256))
	path := filepath.Join(t.TempDir(), "portcullis.yaml")
	os.WriteFile(path, []byte("default_upstream: file.test\nupstreams: [{name: file.test, url: "+fileUp.URL()+"}]\n"), 0o600)
	pc := harness.StartPortcullis(t, harness.BuildPortcullis(t), "--config", path,
		"--upstream", "flag.test="+flagUp.URL(), "--default-upstream", "flag.test")
	r := do(t, "GET", pc.URL+"/v2/team/app/manifests/1.0")
	if got := r.header.Get("Docker-Content-Digest"); got != fromFlag.String() {
		t.Fatalf("served %s; want the flag's upstream (%s), not the file's (%s)", got, fromFlag, fromFile)
	}
	wantError(t, do(t, "GET", pc.URL+"/v2/file.test/team/app/manifests/1.0"), 404, "NAME_UNKNOWN")
}
