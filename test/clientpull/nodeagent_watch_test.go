package clientpull

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/node/containerd"
	"github.com/portcullis/portcullis/test/clients"
	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

const (
	// agentPassWait bounds the wait for the watching agent to act on a
	// change; it runs a pass every second.
	agentPassWait = 15 * time.Second
	// agentStopGrace is how long the agent may take to exit after SIGTERM.
	agentStopGrace = 5 * time.Second
)

// TestNodeAgentContainerdWatch: 'portcullis node containerd --watch', the
// real binary as a long-running process, keeps the real containerd's host
// configuration right while the world changes around it: an upstream added
// to its configuration gets its hosts.toml, a file of its own edited or
// deleted by hand is repaired, an upstream dropped loses its file while a
// hand-written hosts.toml elsewhere is never touched, and SIGTERM stops it
// with exit 0 leaving every file in place, so the node keeps failing closed
// without the agent. Every pull goes through Portcullis (?ns= in its log)
// and no origin registry ever sees a request.
func TestNodeAgentContainerdWatch(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	c := clients.StartContainerd(t)
	// Each upstream is two registries: the origin, whose host is the name
	// in image references (where containerd would go if it fell back), and
	// the store Portcullis fetches from (the upstream's url). So an origin
	// must never see a request, whether Portcullis runs or not.
	originA, storeA := testregistry.Start(t), testregistry.Start(t)
	originB, storeB := testregistry.Start(t), testregistry.Start(t)
	originC := testregistry.Start(t) // configured by hand, not by the agent
	for _, tag := range []string{"v1", "v2", "v3", "v4"} {
		storeA.Push(t, "team/a", tag, testregistry.RandomImage(t, 1, 1024, types.OCIManifestSchema1))
		storeB.Push(t, "team/b", tag, testregistry.RandomImage(t, 1, 1024, types.OCIManifestSchema1))
	}
	regA, regB := originA.Host(), originB.Host()
	type upstream struct{ origin, store *testregistry.Registry }
	a, b := upstream{originA, storeA}, upstream{originB, storeB}
	upstreams := func(ups ...upstream) string {
		var sb strings.Builder
		sb.WriteString("upstreams:\n")
		for _, u := range ups {
			fmt.Fprintf(&sb, "  - name: %q\n    url: %q\n", u.origin.Host(), u.store.URL())
		}
		return sb.String()
	}
	// The server knows both upstreams from the start; the agent's
	// configuration is what changes.
	bin := harness.BuildPortcullis(t)
	p := harness.StartPortcullis(t, bin, "--config", writeFile(t, "portcullis.yaml", upstreams(a, b), 0o644))

	certs := t.TempDir()
	hostsOf := func(registry string) string {
		return filepath.Join(certs, containerd.DirName(registry), containerd.HostsFile)
	}
	hostsA, hostsB, hostsDefault := hostsOf(regA), hostsOf(regB), hostsOf(containerd.DefaultRegistry)
	// A hand-written hosts.toml without the marker: never the agent's.
	handWritten := hostsOf(originC.Host())
	handContent := []byte("server = \"" + originC.URL() + "\"\n[host.\"" + originC.URL() + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n")
	if err := os.MkdirAll(filepath.Dir(handWritten), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(handWritten, handContent, 0o644); err != nil {
		t.Fatal(err)
	}
	handInfo, err := os.Stat(handWritten)
	if err != nil {
		t.Fatal(err)
	}

	agentCfg := filepath.Join(t.TempDir(), "agent.yaml")
	setAgentConfig := func(data string) {
		t.Helper()
		// Replaced by rename, as a Kubernetes ConfigMap volume does.
		tmp := agentCfg + ".new"
		if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, agentCfg); err != nil {
			t.Fatal(err)
		}
	}
	setAgentConfig(upstreams(a))
	agentLogs := &harness.LogBuffer{}
	agent, err := harness.StartProcess(bin, []string{"node", "containerd", "--mirror", p.URL, "--certs-dir", certs,
		"--config", agentCfg, "--watch", "--interval", "1s"}, nil, agentLogs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Kill() })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node agent log:\n%s", agentLogs)
		}
	})
	waitFor := func(what string, done func() bool) {
		t.Helper()
		deadline := time.Now().Add(agentPassWait)
		for !done() {
			if !agent.Running() {
				t.Fatalf("%s: the agent exited: %v", what, agent.ExitErr())
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, agentPassWait)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	originsQuiet := func(what string) {
		t.Helper()
		for name, r := range map[string]*testregistry.Registry{"A": originA, "B": originB, "C": originC} {
			if n, conns := r.Count("", "."), r.Connections(); n != 0 || conns != 0 {
				t.Errorf("%s: origin %s got %d requests on %d connections; want none", what, name, n, conns)
			}
		}
	}
	// --plain-http: a fallback to the origin (https://REGISTRY) would then
	// reach the counting origin instead of failing on TLS.
	pullThroughMirror := func(registry, repo, tag string) {
		t.Helper()
		ref := registry + "/" + repo + ":" + tag
		if out, err := c.Pull(ctx, t, certs, ref, "--plain-http"); err != nil {
			t.Fatalf("ctr pull %s: %v\n%s", ref, err, out)
		}
		seen := requestsFor(t, p, "/v2/"+repo+"/manifests/"+tag, 1)
		if len(seen) == 0 {
			t.Fatalf("ctr pull %s: portcullis logged no request for it", ref)
		}
		for _, l := range seen {
			if q, err := url.ParseQuery(l.Query); err != nil || q.Get("ns") != registry || l.Upstream != registry || l.Status != 200 {
				t.Errorf("ctr pull %s: %s; want ?ns=%s answered 200 from upstream %s", ref, l, registry, registry)
			}
		}
	}

	// a. Started: the configured upstream and _default are written, and a
	// pull goes through Portcullis.
	waitFor("hosts.toml of A and _default written", func() bool {
		return isManaged(hostsA) && isManaged(hostsDefault)
	})
	pullThroughMirror(regA, "team/a", "v1")
	originsQuiet("a. pull from A")
	wantA := readFile(t, hostsA)

	// b. Upstream B added to the configuration: its file appears.
	setAgentConfig(upstreams(a, b))
	waitFor("hosts.toml of the added upstream B written", func() bool { return isManaged(hostsB) })
	if got := readFile(t, hostsB); !bytes.Contains(got, []byte(`server = "`+p.URL+`"`)) {
		t.Errorf("B's hosts.toml does not fail closed (server must be the mirror):\n%s", got)
	}
	pullThroughMirror(regB, "team/b", "v1")
	originsQuiet("b. pull from B")
	wantB := readFile(t, hostsB)

	// c. Drift: A's file edited by hand to fall back to the origin (the
	// marker line kept: the file is still the agent's, and its first line
	// says edits are overwritten), B's file deleted. Both are repaired.
	drifted := containerd.Marker + "\nserver = \"" + originA.URL() + "\"\n[host.\"" + originA.URL() + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	if err := os.WriteFile(hostsA, []byte(drifted), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(hostsB); err != nil {
		t.Fatal(err)
	}
	waitFor("edited A and deleted B repaired", func() bool {
		return fileIs(hostsA, wantA) && fileIs(hostsB, wantB)
	})
	pullThroughMirror(regA, "team/a", "v2")
	pullThroughMirror(regB, "team/b", "v2")
	originsQuiet("c. pulls after the repair")

	// d. B dropped from the configuration: its file goes, and its pulls
	// take _default, which is the mirror too. The hand-written file of
	// another registry is never touched.
	setAgentConfig(upstreams(a))
	waitFor("hosts.toml of the dropped upstream B removed", func() bool {
		_, err := os.Lstat(filepath.Dir(hostsB))
		return os.IsNotExist(err)
	})
	pullThroughMirror(regB, "team/b", "v3")
	originsQuiet("d. pull from the dropped B")
	if !fileIs(handWritten, handContent) {
		t.Errorf("the hand-written %s was changed", handWritten)
	}
	if info, err := os.Stat(handWritten); err != nil || !info.ModTime().Equal(handInfo.ModTime()) {
		t.Errorf("the hand-written %s was touched: %v", handWritten, err)
	}

	// e. SIGTERM: a clean exit that leaves the files, so the node keeps
	// failing closed while the agent is gone (restarted, upgraded).
	if err := agent.Stop(agentStopGrace); err != nil {
		t.Fatalf("agent after SIGTERM: %v; want exit 0", err)
	}
	if !agentLogs.Contains("node agent: stopped; the host configuration stays in place") {
		t.Error("the agent did not log that it stopped and left the files in place")
	}
	if !fileIs(hostsA, wantA) || !isManaged(hostsDefault) {
		t.Fatalf("the agent's files changed when it stopped")
	}
	if !fileIs(handWritten, handContent) {
		t.Errorf("the hand-written %s was changed", handWritten)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("stop portcullis: %v", err)
	}
	for _, ref := range []string{regA + "/team/a:v3", regB + "/team/b:v4"} {
		if out, err := c.Pull(ctx, t, certs, ref, "--plain-http"); err == nil {
			t.Errorf("ctr pull %s with the agent and the mirror stopped succeeded; want it to fail closed\n%s", ref, out)
		}
	}
	originsQuiet("e. agent and mirror stopped")
}

// isManaged reports whether path is a file whose first line is the agent's
// marker.
func isManaged(path string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.HasPrefix(b, []byte(containerd.Marker+"\n"))
}

// fileIs reports whether path holds exactly want.
func fileIs(path string, want []byte) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Equal(b, want)
}
