package e2e

import (
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
