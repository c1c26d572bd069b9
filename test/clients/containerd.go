package clients

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/harness"
)

const (
	// containerdReadyTimeout bounds the wait for `ctr version` to work.
	containerdReadyTimeout = 20 * time.Second
	// containerdStopGrace is how long containerd gets after SIGTERM.
	containerdStopGrace = 10 * time.Second
	// DefaultPlatform is what Pull asks for unless told otherwise.
	DefaultPlatform = "linux/amd64"
)

// Containerd is a containerd daemon private to one test.
type Containerd struct {
	Address string // its gRPC unix socket, for ctr --address
	Root    string // its root (content store, snapshots, metadata)
	State   string // its state directory
	Logs    *harness.LogBuffer

	ctr  string
	proc *harness.Process
}

// StartContainerd runs the real containerd (Debian package `containerd`;
// it needs root) with a generated config: root, state and socket in a short
// temporary directory, no CRI plugin, nothing on TCP. It returns once
// `ctr --address SOCK version` works (at most 20 s). When the test ends
// containerd gets SIGTERM (SIGKILL after 10 s) and its directory is removed;
// a failed test shows its log.
func StartContainerd(t testing.TB) *Containerd {
	t.Helper()
	bin := lookPath(t, "containerd", "apt-get install -y containerd")
	ctr := lookPath(t, "ctr", "apt-get install -y containerd")
	if os.Geteuid() != 0 {
		t.Fatalf("containerd needs root; this test runs as uid %d", os.Geteuid())
	}
	// Unix socket paths are limited to 107 bytes, and t.TempDir() paths
	// carry the test name: use a short directory of our own.
	base, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		t.Fatalf("containerd: %v", err)
	}
	c := &Containerd{
		Address: filepath.Join(base, "containerd.sock"),
		Root:    filepath.Join(base, "root"),
		State:   filepath.Join(base, "state"),
		Logs:    &harness.LogBuffer{},
		ctr:     ctr,
	}
	config := filepath.Join(base, "config.toml")
	writeFile(t, config, containerdConfig(c, filepath.Join(base, "opt")))

	// Cleanups run last-registered first: stop, then show logs, then remove.
	t.Cleanup(func() {
		if err := os.RemoveAll(base); err != nil {
			t.Logf("remove containerd dir: %v", err)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("containerd log:\n%s", c.Logs)
		}
	})
	t.Cleanup(func() {
		if c.proc == nil {
			return
		}
		if err := c.proc.Stop(containerdStopGrace); err != nil {
			t.Logf("stop containerd: %v", err)
		}
	})

	c.proc, err = harness.StartProcess(bin, []string{"--config", config}, nil, c.Logs)
	if err != nil {
		t.Fatalf("containerd: %v", err)
	}
	if err := c.waitReady(); err != nil {
		t.Fatalf("containerd not ready: %v\nlog:\n%s", err, c.Logs)
	}
	t.Logf("started containerd (pid %d) on %s", c.proc.Pid(), c.Address)
	return c
}

// containerdConfig renders a version 2 config.toml (containerd 1.5 to 1.7).
func containerdConfig(c *Containerd, optDir string) string {
	q := strconv.Quote
	return fmt.Sprintf(`version = 2
root = %s
state = %s
# No CRI (it wants CNI and a kubelet); no snapshotters that cannot work here.
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = %s

[ttrpc]
  address = %s

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %s
`, q(c.Root), q(c.State), q(c.Address), q(c.Address+".ttrpc"), q(optDir))
}

func (c *Containerd) waitReady() error {
	deadline := time.Now().Add(containerdReadyTimeout)
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		out, err := execOutput(ctx, c.ctr, "--address", c.Address, "version")
		cancel()
		if err == nil {
			return nil
		}
		last = fmt.Sprintf("%v: %s", err, strings.TrimSpace(out))
		select {
		case <-c.proc.Done():
			return fmt.Errorf("containerd exited: %v", c.proc.ExitErr())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("`ctr version` did not work within %s: %s", containerdReadyTimeout, last)
		}
	}
}

// Ctr runs `ctr --address SOCK ARGS…` (bounded by ctx and 2 minutes) and
// returns stdout and stderr combined.
func (c *Containerd) Ctr(ctx context.Context, t testing.TB, args ...string) (string, error) {
	t.Helper()
	return run(ctx, t, c.ctr, append([]string{"--address", c.Address}, args...), nil)
}

// Pull runs
//
//	ctr --address SOCK images pull --hosts-dir HOSTSDIR [EXTRA…] [--platform linux/amd64] REF
//
// which fetches the image (ctr itself talks to the registry hosts from
// HOSTSDIR) and unpacks it into the default (overlayfs) snapshotter.
// --platform linux/amd64 is added unless extraArgs choose a platform
// (--platform, --all-platforms). Pass "--snapshotter", "native" to unpack
// without overlay mounts. For a fetch without unpacking use Ctr with
// "content", "fetch".
func (c *Containerd) Pull(ctx context.Context, t testing.TB, hostsDir, ref string, extraArgs ...string) (string, error) {
	t.Helper()
	args := []string{"images", "pull", "--hosts-dir", hostsDir}
	args = append(args, extraArgs...)
	if !hasAnyFlag(extraArgs, "--platform", "--all-platforms") {
		args = append(args, "--platform", DefaultPlatform)
	}
	args = append(args, ref)
	return c.Ctr(ctx, t, args...)
}

// WriteHostsToml writes HOSTSDIR/REGISTRY/hosts.toml, containerd's
// per-registry host configuration, sending pulls and tag resolution for
// registry to mirrorURL ("http://127.0.0.1:5000" for plain http; an https
// mirror gets skip_verify). containerd adds ?ns=REGISTRY to every request it
// sends to a mirror. registry "_default" configures every registry without a
// directory of its own; it gets no server line.
//
// When the mirror answers an error status or cannot be reached, ctr (1.6)
// falls back to the server, https://REGISTRY: one failed DNS lookup for a
// name that does not resolve. After a 403 it then reports the mirror's
// status line without the OCI error body ("pulling from host 127.0.0.1:5000
// failed with status code [manifests v1]: 403 Forbidden"); after a 404 it
// reports only the server's failure (the DNS error).
func WriteHostsToml(t testing.TB, hostsDir, registry, mirrorURL string) {
	t.Helper()
	u, err := url.Parse(mirrorURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		t.Fatalf("WriteHostsToml: mirror URL %q: want http://HOST:PORT or https://HOST:PORT", mirrorURL)
	}
	var b strings.Builder
	if registry != "_default" {
		fmt.Fprintf(&b, "server = %s\n\n", strconv.Quote("https://"+serverHost(registry)))
	}
	fmt.Fprintf(&b, "[host.%s]\n  capabilities = [\"pull\", \"resolve\"]\n", strconv.Quote(mirrorURL))
	if u.Scheme == "https" {
		b.WriteString("  skip_verify = true\n")
	}
	dir := filepath.Join(hostsDir, registry)
	mkdirAll(t, dir)
	writeFile(t, filepath.Join(dir, "hosts.toml"), b.String())
}

// serverHost maps a registry name to the host that serves its API.
func serverHost(registry string) string {
	if registry == "docker.io" {
		return "registry-1.docker.io"
	}
	return registry
}

func hasAnyFlag(args []string, flags ...string) bool {
	for _, a := range args {
		for _, f := range flags {
			if a == f || strings.HasPrefix(a, f+"=") {
				return true
			}
		}
	}
	return false
}
