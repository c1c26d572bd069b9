package clients

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const testTimeout = 3 * time.Minute

// invalidRegistry is a registry name that never resolves: pulls for it can
// only succeed through the mirror.
const invalidRegistry = "registry.portcullis.invalid"

func TestSkopeoCopyFromLoopbackRegistry(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	reg := startRegistry(t)
	img := reg.pushImage(t, "team/app:v1")
	dir := filepath.Join(t.TempDir(), "layout")

	out, err := SkopeoCopy(ctx, t, "--src-tls-verify=false", "docker://"+reg.Host+"/team/app:v1", "oci:"+dir+":v1")
	if err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	reg.logRequests(t, "skopeo")
	if got, want := LayoutRoot(t, dir, "v1").Digest, digestOf(t, img); got != want {
		t.Errorf("copied manifest %s; want %s", got, want)
	}
	if !reg.saw("skopeo", "GET", "/v2/team/app/manifests/v1") {
		t.Error("registry saw no GET /v2/team/app/manifests/v1 from skopeo")
	}
}

func TestSkopeoCopyThroughRegistriesConfMirror(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	mirror := startRegistry(t)
	// A path-prefix mirror: the registry name is the first path element.
	img := mirror.pushImage(t, invalidRegistry+"/team/app:v1")
	multi := mirror.pushIndex(t, invalidRegistry+"/team/multi:v1")
	conf := WriteRegistriesConf(t, map[string]string{invalidRegistry: mirror.Host + "/" + invalidRegistry})

	t.Run("image", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "layout")
		out, err := SkopeoCopy(ctx, t, "--registries-conf", conf, "docker://"+invalidRegistry+"/team/app:v1", "oci:"+dir+":v1")
		if err != nil {
			t.Fatalf("skopeo copy: %v\n%s", err, out)
		}
		if got, want := LayoutRoot(t, dir, "v1").Digest, digestOf(t, img); got != want {
			t.Errorf("copied manifest %s; want %s", got, want)
		}
		if p := "/v2/" + invalidRegistry + "/team/app/manifests/v1"; !mirror.saw("skopeo", "GET", p) {
			t.Errorf("mirror saw no GET %s", p)
		}
	})

	t.Run("index with --all", func(t *testing.T) {
		mirror.reset()
		dir := filepath.Join(t.TempDir(), "layout")
		out, err := SkopeoCopy(ctx, t, "--registries-conf", conf, "--all", "docker://"+invalidRegistry+"/team/multi:v1", "oci:"+dir+":v1")
		if err != nil {
			t.Fatalf("skopeo copy: %v\n%s", err, out)
		}
		mirror.logRequests(t, "skopeo")
		// skopeo 1.9 re-serializes the index (dropping the descriptors'
		// artifactType, which go-containerregistry writes), so the index
		// digest changes; the platform manifests keep theirs.
		children := layoutChildren(t, dir, "v1")
		for name, img := range map[string]digester{"amd64": multi.Amd64, "arm64": multi.Arm64} {
			d := digestOf(t, img)
			if !slices.Contains(children, d) {
				t.Errorf("copied index lists %v; want the %s manifest %s", children, name, d)
			}
			p := "/v2/" + invalidRegistry + "/team/multi/manifests/" + d.String()
			if !mirror.saw("skopeo", "GET", p) {
				t.Errorf("mirror saw no GET %s (%s manifest)", p, name)
			}
		}
	})
}

func TestContainerdPullThroughHostsTomlMirror(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c := StartContainerd(t)
	mirror := startRegistry(t)
	multi := mirror.pushIndex(t, "team/multi:v1")
	hosts := t.TempDir()
	WriteHostsToml(t, hosts, invalidRegistry, mirror.URL)
	WriteHostsToml(t, hosts, "_default", mirror.URL)

	indexDigest := digestOf(t, multi.Index).String()
	amd64 := digestOf(t, multi.Amd64).String()
	arm64 := digestOf(t, multi.Arm64).String()

	// checkNS asserts that every request containerd sent carried ?ns=want
	// and returns how many there were.
	checkNS := func(t *testing.T, want string) {
		t.Helper()
		seen := mirror.requests("containerd")
		if len(seen) == 0 {
			t.Fatal("mirror saw no request from containerd")
		}
		for _, s := range seen {
			if s.RawQuery != "ns="+want {
				t.Errorf("%s: query %q; want ns=%s", s, s.RawQuery, want)
			}
		}
	}

	t.Run("registry with its own hosts.toml", func(t *testing.T) {
		mirror.reset()
		ref := invalidRegistry + "/team/multi:v1"
		out, err := c.Pull(ctx, t, hosts, ref)
		if err != nil {
			t.Fatalf("ctr pull: %v\n%s", err, out)
		}
		mirror.logRequests(t, "containerd")
		checkNS(t, invalidRegistry)
		for _, want := range []struct{ method, path string }{
			{"HEAD", "/v2/team/multi/manifests/v1"},
			{"GET", "/v2/team/multi/manifests/" + indexDigest},
			{"GET", "/v2/team/multi/manifests/" + amd64},
		} {
			if !mirror.saw("containerd", want.method, want.path) {
				t.Errorf("mirror saw no %s %s", want.method, want.path)
			}
		}
		if mirror.saw("containerd", "GET", "/v2/team/multi/manifests/"+arm64) {
			t.Error("ctr fetched the arm64 manifest although it pulled linux/amd64 only")
		}
		if !strings.Contains(out, "unpacking linux/amd64 "+indexDigest) {
			t.Errorf("ctr did not unpack the image into the default snapshotter:\n%s", out)
		}
		ls, err := c.Ctr(ctx, t, "images", "ls")
		if err != nil || !strings.Contains(ls, ref) || !strings.Contains(ls, indexDigest) {
			t.Errorf("ctr images ls does not list %s at %s: %v\n%s", ref, indexDigest, err, ls)
		}
	})

	t.Run("registry through _default, native snapshotter", func(t *testing.T) {
		mirror.reset()
		const other = "other.portcullis.invalid"
		out, err := c.Pull(ctx, t, hosts, other+"/team/multi:v1", "--snapshotter", "native")
		if err != nil {
			t.Fatalf("ctr pull: %v\n%s", err, out)
		}
		mirror.logRequests(t, "containerd")
		// ns names the registry of the reference, not "_default".
		checkNS(t, other)
		if !strings.Contains(out, "unpacking linux/amd64 "+indexDigest) {
			t.Errorf("ctr did not unpack into the native snapshotter:\n%s", out)
		}
		snaps, err := c.Ctr(ctx, t, "snapshots", "--snapshotter", "native", "ls")
		if err != nil || !strings.Contains(snaps, "Committed") {
			t.Errorf("native snapshotter holds no committed snapshot: %v\n%s", err, snaps)
		}
	})
}

func TestCranePull(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	reg := startRegistry(t)
	multi := reg.pushIndex(t, "team/multi:v1")
	ref := reg.Host + "/team/multi:v1"
	want := digestOf(t, multi.Index)

	out, err := CraneRun(ctx, t, "digest", "--insecure", ref)
	if err != nil || strings.TrimSpace(out) != want.String() {
		t.Fatalf("crane digest = %q, %v; want %s", out, err, want)
	}

	dir := filepath.Join(t.TempDir(), "layout")
	if out, err := CraneRun(ctx, t, "pull", "--insecure", "--format", "oci", ref, dir); err != nil {
		t.Fatalf("crane pull: %v\n%s", err, out)
	}
	reg.logRequests(t, "crane")
	if got := LayoutRoot(t, dir, "").Digest; got != want {
		t.Errorf("pulled %s; want index %s", got, want)
	}
	for _, img := range []digester{multi.Amd64, multi.Arm64} {
		if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", digestOf(t, img).Hex)); err != nil {
			t.Errorf("layout lacks platform manifest: %v", err)
		}
	}
}
