package clientpull

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/clients"
	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

// TestNodeAgentContainerd: 'portcullis node containerd' configures a node's
// containerd (the real one, pulling with ctr --hosts-dir) so that a pull
// goes through Portcullis, and with Portcullis down the same kind of pull
// fails without one connection to the origin registry, for a configured
// upstream and for any other registry (_default). With --fail-open the
// pull reaches the origin instead.
//
// ctr runs with --plain-http so that containerd's implicit fallback host
// (https://REGISTRY without a `server` line) would be http://REGISTRY: a
// fallback would then reach the counting origin, not fail on TLS. The
// "without server" case shows that it does.
func TestNodeAgentContainerd(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	c := clients.StartContainerd(t)
	origin := testregistry.Start(t) // a configured upstream, pulled by its own name
	other := testregistry.Start(t)  // a registry Portcullis does not know
	for _, tag := range []string{"v1", "v2", "v3", "v4"} {
		origin.Push(t, "team/app", tag, testregistry.RandomImage(t, 1, 1024, types.OCIManifestSchema1))
	}
	other.Push(t, "team/other", "v1", testregistry.RandomImage(t, 1, 1024, types.OCIManifestSchema1))
	registry := origin.Host() // 127.0.0.1:PORT, the name in image references
	cfg := writeFile(t, "portcullis.yaml", "upstreams:\n  - name: \""+registry+"\"\n    url: \""+origin.URL()+"\"\n", 0o644)
	bin := harness.BuildPortcullis(t)
	p := harness.StartPortcullis(t, bin, "--config", cfg)
	certs := t.TempDir()
	// A stale hand-written directory in the "host:port" spelling that sends
	// pulls straight to the origin: the agent leaves it alone, and its own
	// "host_port_" directory, which containerd looks up first, wins.
	stale := filepath.Join(certs, registry, "hosts.toml")
	if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("server = \""+origin.URL()+"\"\n[host.\""+origin.URL()+"\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := func(extra ...string) {
		t.Helper()
		args := append([]string{"node", "containerd", "--mirror", p.URL, "--certs-dir", certs, "--config", cfg}, extra...)
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("portcullis %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	pull := func(ref string) (string, error) {
		t.Helper()
		return c.Pull(ctx, t, certs, ref, "--plain-http")
	}
	agent()
	for _, dir := range []string{strings.ReplaceAll(registry, ":", "_") + "_", "_default"} {
		if _, err := os.Stat(filepath.Join(certs, dir, "hosts.toml")); err != nil {
			t.Fatalf("agent wrote no %s/hosts.toml: %v", dir, err)
		}
	}

	// 1. Through the mirror, routed by ?ns=.
	ref := registry + "/team/app:v1"
	if out, err := pull(ref); err != nil {
		t.Fatalf("ctr pull %s through Portcullis: %v\n%s", ref, err, out)
	}
	seen := requestsFor(t, p, "/v2/team/app/manifests/v1", 1)
	if len(seen) == 0 {
		t.Fatalf("portcullis logged no request for team/app:v1:\n%v", requestLog(t, p))
	}
	for _, l := range seen {
		q, err := url.ParseQuery(l.Query)
		if err != nil || q.Get("ns") != registry || l.Upstream != registry || l.Status != 200 {
			t.Errorf("%s: want ?ns=%s answered 200 from upstream %s", l, registry, registry)
		}
	}

	// 2. Mirror down: fail closed, the origins see nothing.
	if err := p.Stop(); err != nil {
		t.Fatalf("stop portcullis: %v", err)
	}
	originsQuiet := func(what string) {
		t.Helper()
		for name, r := range map[string]*testregistry.Registry{"origin": origin, "other": other} {
			if n, conns := r.Count("", "."), r.Connections(); n != 0 || conns != 0 {
				t.Errorf("%s: the %s registry got %d requests on %d connections; want none", what, name, n, conns)
			}
		}
	}
	origin.ResetCounts()
	other.ResetCounts()
	for _, ref := range []string{registry + "/team/app:v2", other.Host() + "/team/other:v1"} {
		if out, err := pull(ref); err == nil {
			t.Errorf("ctr pull %s with the mirror down succeeded; want it to fail closed\n%s", ref, out)
		}
	}
	originsQuiet("fail closed")

	// 3. Control: a hosts.toml without `server` (what people usually
	// write) does fall back to the origin, so step 2 could have seen it.
	noServer := "[host.\"" + p.URL + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	ownFile := filepath.Join(certs, strings.ReplaceAll(registry, ":", "_")+"_", "hosts.toml")
	if err := os.WriteFile(ownFile, []byte(noServer), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := pull(registry + "/team/app:v3"); err != nil {
		t.Errorf("control: ctr pull without a server line did not fall back to the origin: %v\n%s", err, out)
	}
	if origin.Count("GET", "^/v2/team/app/manifests/") == 0 {
		t.Error("control: the origin saw no manifest request; the fail-closed check above proves nothing")
	}
	// The hand-written file is now foreign: the agent refuses it and says so.
	args := []string{"node", "containerd", "--mirror", p.URL, "--certs-dir", certs, "--config", cfg}
	if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err == nil || !strings.Contains(string(out), "left alone") {
		t.Errorf("agent over a foreign hosts.toml: err %v, want a refusal naming it:\n%s", err, out)
	}
	if err := os.Remove(ownFile); err != nil {
		t.Fatal(err)
	}

	// 4. --fail-open: with the mirror down the pull reaches the origin.
	agent("--fail-open")
	origin.ResetCounts()
	if out, err := pull(registry + "/team/app:v4"); err != nil {
		t.Fatalf("ctr pull with --fail-open and the mirror down: %v\n%s", err, out)
	}
	if n := origin.Count("GET", "^/v2/team/app/manifests/"); n == 0 {
		t.Error("--fail-open: the origin saw no manifest request")
	}
}
