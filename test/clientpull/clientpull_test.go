// Package clientpull pulls images with real, unmodified clients (skopeo,
// containerd's ctr, crane) through the real portcullis binary from real
// registries, everything on loopback, and checks that what each client
// stored is byte for byte what was pushed upstream.
package clientpull

import (
	"encoding/base64"
	"encoding/json"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/clients"
	"github.com/portcullis/portcullis/test/testregistry"
)

// invalidRegistry never resolves (RFC 2606 .invalid): a pull that names it
// can only have been served by the mirror.
const invalidRegistry = "registry.portcullis.invalid"

// TestSkopeoPathPrefix: a user copies images with skopeo from
// PORTCULLIS/<upstream>/team/app:TAG, naming the upstream in the path.
//
// Writing oci:, skopeo converts a Docker schema2 manifest to OCI by default:
// a new manifest digest (the layers keep theirs), so nothing could show that
// the manifest came through unchanged. The Docker image therefore goes to
// dir:, skopeo's verbatim format (manifest.json as fetched, each blob under
// its digest); the OCI image goes to oci:. Both copies use
// --preserve-digests, so skopeo itself refuses to rewrite anything.
func TestSkopeoPathPrefix(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	up := testregistry.Start(t)
	dockerImg := testregistry.RandomImage(t, 2, 4096, types.DockerManifestSchema2)
	ociImg := testregistry.RandomImage(t, 2, 4096, types.OCIManifestSchema1)
	up.Push(t, "team/app", "1.0", dockerImg)
	up.Push(t, "team/app", "1.0-oci", ociImg)
	p := startPortcullis(t, "--upstream", "up.test="+up.URL(), "--default-upstream", "up.test")

	t.Run("docker schema2 to dir:", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "app")
		out, err := clients.SkopeoCopy(ctx, t, "--preserve-digests", "--src-tls-verify=false",
			"docker://"+p.Addr+"/up.test/team/app:1.0", "dir:"+dir)
		if err != nil {
			t.Fatalf("skopeo copy: %v\n%s", err, out)
		}
		assertStoredImage(t, "skopeo dir:", skopeoDirStore(dir), readFile(t, filepath.Join(dir, "manifest.json")), dockerImg)
	})

	t.Run("OCI to oci:", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "layout")
		out, err := clients.SkopeoCopy(ctx, t, "--preserve-digests", "--src-tls-verify=false",
			"docker://"+p.Addr+"/up.test/team/app:1.0-oci", "oci:"+dir+":1.0-oci")
		if err != nil {
			t.Fatalf("skopeo copy: %v\n%s", err, out)
		}
		root := clients.LayoutRoot(t, dir, "1.0-oci")
		if want := digestOf(t, ociImg); root.Digest != want {
			t.Errorf("oci layout tags %s; want the pushed manifest %s", root.Digest, want)
		}
		store, b := layoutManifest(t, dir, root)
		assertStoredImage(t, "skopeo oci:", store, b, ociImg)
	})

	seen := requestsFor(t, p, "/manifests/", 2)
	if len(seen) < 2 {
		t.Errorf("portcullis logged %d manifest requests; want one per copy at least: %v", len(seen), seen)
	}
	for _, l := range seen {
		if l.Upstream != "up.test" || l.Repo != "team/app" {
			t.Errorf("%s: want upstream up.test, repo team/app", l)
		}
	}
}

// TestSkopeoRegistriesConfMirror: a user keeps pulling
// registry.portcullis.invalid/team/app:v1 as always; registries.conf sends
// it to the mirror PORTCULLIS/registry.portcullis.invalid.
func TestSkopeoRegistriesConfMirror(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	if addrs, err := net.DefaultResolver.LookupHost(ctx, invalidRegistry); err == nil {
		t.Fatalf("%s resolves to %v; the test needs a name only the mirror can serve", invalidRegistry, addrs)
	}
	up := testregistry.Start(t)
	img := testregistry.RandomImage(t, 3, 2048, types.OCIManifestSchema1)
	up.Push(t, "team/app", "v1", img)
	p := startPortcullis(t, "--upstream", invalidRegistry+"="+up.URL(), "--default-upstream", invalidRegistry)
	conf := clients.WriteRegistriesConf(t, map[string]string{invalidRegistry: p.Addr + "/" + invalidRegistry})

	dir := filepath.Join(t.TempDir(), "layout")
	out, err := clients.SkopeoCopy(ctx, t, "--preserve-digests", "--registries-conf", conf,
		"docker://"+invalidRegistry+"/team/app:v1", "oci:"+dir+":v1")
	if err != nil {
		t.Fatalf("skopeo copy through the mirror: %v\n%s", err, out)
	}
	root := clients.LayoutRoot(t, dir, "v1")
	store, b := layoutManifest(t, dir, root)
	assertStoredImage(t, "skopeo via mirror", store, b, img)

	want := "/v2/" + invalidRegistry + "/team/app/manifests/v1"
	seen := requestsFor(t, p, want, 1)
	if len(seen) == 0 {
		t.Fatalf("portcullis logged no request for %s:\n%v", want, requestLog(t, p))
	}
	for _, l := range seen {
		if l.Upstream != invalidRegistry || l.Repo != "team/app" || l.Status != 200 {
			t.Errorf("%s: want 200 from upstream %s, repo team/app", l, invalidRegistry)
		}
	}
	if n := up.Count("GET", "^/v2/team/app/manifests/v1$"); n != 1 {
		t.Errorf("upstream saw %d GET /v2/team/app/manifests/v1; want 1", n)
	}
}

// TestContainerdHostsToml: a node pulls registry.portcullis.invalid/team/multi:v1
// and docker.io/library/alpine:3.20 with ctr; hosts.toml sends both to
// Portcullis, which routes by the ?ns= containerd adds.
func TestContainerdHostsToml(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	c := clients.StartContainerd(t)
	up := testregistry.Start(t)
	hub := testregistry.Start(t)
	multi := testregistry.MultiArchIndex(t, types.OCIImageIndex, "linux/amd64", "linux/arm64")
	up.PushIndex(t, "team/multi", "v1", multi)
	alpine := testregistry.MultiArchIndex(t, types.DockerManifestList, "linux/amd64", "linux/arm64")
	hub.PushIndex(t, "library/alpine", "3.20", alpine)
	p := startPortcullis(t,
		"--upstream", invalidRegistry+"="+up.URL(),
		"--upstream", "docker.io="+hub.URL(),
		"--default-upstream", "docker.io")
	hosts := t.TempDir()
	clients.WriteHostsToml(t, hosts, invalidRegistry, p.URL)
	clients.WriteHostsToml(t, hosts, "_default", p.URL)

	for _, tc := range []struct {
		name, ref, ns, repo string
		idx                 v1.ImageIndex
	}{
		{"own hosts.toml", invalidRegistry + "/team/multi:v1", invalidRegistry, "team/multi", multi},
		{"docker.io through _default", "docker.io/library/alpine:3.20", "docker.io", "library/alpine", alpine},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := c.Pull(ctx, t, hosts, tc.ref)
			if err != nil {
				t.Fatalf("ctr pull %s: %v\n%s", tc.ref, err, out)
			}
			idxDigest := digestOf(t, tc.idx)
			amd64 := childFor(t, tc.idx, "linux/amd64")
			arm64 := childFor(t, tc.idx, "linux/arm64")

			// Every request containerd sent for the repository carried
			// ?ns=REGISTRY, and Portcullis routed it by that to the
			// upstream of that name; the path names no registry.
			seen := requestsFor(t, p, "/v2/"+tc.repo+"/", 5) // tag, index, manifest, config, layer
			for _, want := range []string{"HEAD /v2/" + tc.repo + "/manifests/" + tc.ref[strings.LastIndex(tc.ref, ":")+1:],
				"GET /v2/" + tc.repo + "/manifests/" + idxDigest.String(),
				"GET /v2/" + tc.repo + "/manifests/" + amd64.String()} {
				if !slices.ContainsFunc(seen, func(l logLine) bool { return l.Method+" "+l.Path == want }) {
					t.Errorf("portcullis logged no %s?ns=%s; it logged:\n%v", want, tc.ns, seen)
				}
			}
			for _, l := range seen {
				if l.Query != "ns="+tc.ns || l.Upstream != tc.ns || l.Repo != tc.repo || l.Status != 200 {
					t.Errorf("%s: want query ns=%s, 200 from upstream %s, repo %s", l, tc.ns, tc.ns, tc.repo)
				}
				if strings.Contains(l.Path, arm64.String()) {
					t.Errorf("%s: containerd pulled linux/amd64 only; the arm64 manifest was not needed", l)
				}
			}

			ls, err := c.Ctr(ctx, t, "images", "ls")
			if err != nil {
				t.Fatalf("ctr images ls: %v\n%s", err, ls)
			}
			if !slices.ContainsFunc(strings.Split(ls, "\n"), func(line string) bool {
				f := strings.Fields(line)
				return len(f) >= 3 && f[0] == tc.ref && f[2] == idxDigest.String()
			}) {
				t.Errorf("ctr images ls does not list %s at the pushed index digest %s:\n%s", tc.ref, idxDigest, ls)
			}
			content, err := c.Ctr(ctx, t, "content", "ls", "-q")
			if err != nil {
				t.Fatalf("ctr content ls: %v\n%s", err, content)
			}
			for _, d := range []v1.Hash{idxDigest, amd64} {
				if !strings.Contains(content, d.String()) {
					t.Errorf("containerd's content store lacks %s", d)
				}
			}
			store := containerdStore(ctx, c)
			b, err := store(idxDigest)
			if err != nil {
				t.Fatal(err)
			}
			assertStoredIndex(t, "containerd", store, b, tc.idx, []v1.Hash{amd64})
		})
	}
}

// TestDockerHubDefaultUpstream: Docker's registry-mirrors send Hub pulls
// with no registry name and one-word names without library/; Portcullis
// serves PORTCULLIS/alpine:3.20 from the docker.io upstream's library/alpine.
func TestDockerHubDefaultUpstream(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	hub := testregistry.Start(t)
	img := testregistry.RandomImage(t, 2, 2048, types.DockerManifestSchema2)
	hub.Push(t, "library/alpine", "3.20", img)
	p := startPortcullis(t, "--upstream", "docker.io="+hub.URL(), "--default-upstream", "docker.io")
	want := digestOf(t, img)

	if res := mustCrane(ctx, t, "digest", "--insecure", p.Addr+"/alpine:3.20"); strings.TrimSpace(res.Stdout) != want.String() {
		t.Errorf("crane digest %s/alpine:3.20 = %q; want %s", p.Addr, res.Stdout, want)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	mustCrane(ctx, t, "pull", "--insecure", "--format", "oci", p.Addr+"/alpine:3.20", dir)
	root := clients.LayoutRoot(t, dir, "")
	if root.Digest != want {
		t.Errorf("crane pulled %s; want %s", root.Digest, want)
	}
	store, b := layoutManifest(t, dir, root)
	assertStoredImage(t, "crane pull alpine:3.20", store, b, img)

	seen := requestsFor(t, p, "/v2/alpine/", 2)
	if len(seen) < 2 {
		t.Errorf("portcullis logged %d requests for /v2/alpine/; want crane's HEAD and GET of the tag at least: %v", len(seen), seen)
	}
	for _, l := range seen {
		if l.Upstream != "docker.io" || l.Repo != "library/alpine" || l.Status != 200 {
			t.Errorf("%s: want 200 from upstream docker.io, repo library/alpine", l)
		}
	}
	if n := hub.Count("", "^/v2/alpine/"); n != 0 {
		t.Errorf("upstream saw %d requests for /v2/alpine/; Portcullis must add library/", n)
	}
	if n := hub.Count("GET", "^/v2/library/alpine/manifests/3.20$"); n != 1 {
		t.Errorf("upstream saw %d GET /v2/library/alpine/manifests/3.20; want 1 (crane digest's HEAD made Portcullis fetch it; crane pull was served from cache)", n)
	}
}

// TestCrane: crane pulls a whole multi-arch index into an OCI layout, reads
// an artifact manifest that has a subject and an image with a foreign layer
// (without fetching the foreign layer), and lists tags, all through the path
// prefix.
func TestCrane(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	up := testregistry.Start(t)
	multi := testregistry.MultiArchIndex(t, types.OCIImageIndex, "linux/amd64", "linux/arm64", "linux/arm/v7")
	up.PushIndex(t, "team/multi", "v1", multi)
	p := startPortcullis(t, "--upstream", "up.test="+up.URL(), "--default-upstream", "up.test")
	prefix := p.Addr + "/up.test/"

	t.Run("multi-arch index, all platforms", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "layout")
		mustCrane(ctx, t, "pull", "--insecure", "--format", "oci", prefix+"team/multi:v1", dir)
		root := clients.LayoutRoot(t, dir, "")
		if want := digestOf(t, multi); root.Digest != want || root.MediaType != types.OCIImageIndex {
			t.Errorf("layout holds %s (%s); want the index %s", root.Digest, root.MediaType, want)
		}
		store, b := layoutManifest(t, dir, root)
		assertStoredIndex(t, "crane pull", store, b, multi, nil)
	})

	t.Run("artifact with a subject", func(t *testing.T) {
		subject := testregistry.RandomImage(t, 1, 1024, types.OCIManifestSchema1)
		subjectDigest := up.Push(t, "team/signed", "1.0", subject)
		const artifactType = "application/vnd.example.sbom.v1+json"
		art := testregistry.Artifact(t, v1.Descriptor{
			MediaType: types.OCIManifestSchema1, Digest: subjectDigest, Size: int64(len(raw(t, subject))),
		}, artifactType, []byte(`{"sbom":"portcullis"}`))
		artDigest := up.Push(t, "team/signed", "", art)

		res := mustCrane(ctx, t, "manifest", "--insecure", prefix+"team/signed@"+artDigest.String())
		if got := []byte(res.Stdout); string(got) != string(raw(t, art)) {
			t.Errorf("crane manifest printed %s; want the pushed artifact %s byte for byte", sha256Of(got), artDigest)
		}
		var m v1.Manifest
		if err := json.Unmarshal([]byte(res.Stdout), &m); err != nil || m.Subject == nil || m.Subject.Digest != subjectDigest {
			t.Errorf("artifact manifest subject = %+v (%v); want %s", m.Subject, err, subjectDigest)
		}
		// The subject's referrers, through the proxy, list the artifact.
		resp, body := httpGet(ctx, t, p.URL+"/v2/up.test/team/signed/referrers/"+subjectDigest.String(), "")
		var refs v1.IndexManifest
		if err := json.Unmarshal(body, &refs); resp.StatusCode != 200 || err != nil ||
			!slices.ContainsFunc(refs.Manifests, func(d v1.Descriptor) bool {
				return d.Digest == artDigest && d.ArtifactType == artifactType
			}) {
			t.Errorf("GET referrers/%s = %d %s; want an index listing %s with artifactType %s", subjectDigest, resp.StatusCode, body, artDigest, artifactType)
		}
	})

	t.Run("foreign layer listed, not fetched", func(t *testing.T) {
		img := testregistry.ForeignLayerImage(t)
		up.Push(t, "team/win", "ltsc", img)
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		foreign, normal := m.Layers[0], m.Layers[1]

		res := mustCrane(ctx, t, "manifest", "--insecure", prefix+"team/win:ltsc")
		if string(res.Stdout) != string(raw(t, img)) {
			t.Errorf("crane manifest printed %s; want the pushed manifest %s byte for byte", sha256Of([]byte(res.Stdout)), digestOf(t, img))
		}
		var got v1.Manifest
		if err := json.Unmarshal([]byte(res.Stdout), &got); err != nil || len(got.Layers) != 2 ||
			got.Layers[0].MediaType != types.DockerForeignLayer || !slices.Equal(got.Layers[0].URLs, foreign.URLs) ||
			got.Layers[0].Digest != foreign.Digest || got.Layers[0].Size != foreign.Size {
			t.Errorf("foreign layer listed as %+v (%v); want %+v", got.Layers, err, foreign)
		}

		res = mustCrane(ctx, t, "blob", "--insecure", prefix+"team/win@"+normal.Digest.String())
		if got := sha256Of([]byte(res.Stdout)); got != normal.Digest || int64(len(res.Stdout)) != normal.Size {
			t.Errorf("crane blob printed %s (%d bytes); want %s (%d bytes)", got, len(res.Stdout), normal.Digest, normal.Size)
		}
		if seen := requestsFor(t, p, foreign.Digest.String(), 0); len(seen) != 0 {
			t.Errorf("portcullis was asked for the foreign layer: %v", seen)
		}
		if n := up.Count("", foreign.Digest.Hex); n != 0 {
			t.Errorf("portcullis asked the upstream %d times for the foreign layer %s", n, foreign.Digest)
		}
	})

	t.Run("ls", func(t *testing.T) {
		for _, tag := range []string{"1.0", "1.1", "latest"} {
			up.Push(t, "team/tags", tag, testregistry.RandomImage(t, 1, 512, types.OCIManifestSchema1))
		}
		res := mustCrane(ctx, t, "ls", "--insecure", prefix+"team/tags")
		if got := strings.Fields(res.Stdout); !slices.Equal(got, []string{"1.0", "1.1", "latest"}) {
			t.Errorf("crane ls = %q; want [1.0 1.1 latest]", got)
		}
	})
}

// TestTokenAuthUpstream: the upstream wants bearer tokens from a token server
// on another host:port and credentials for it. Portcullis holds them (from a
// password file); crane pulls anonymously and never sees a challenge, the
// password never shows in any log, and tokens are fetched once per
// repository scope.
func TestTokenAuthUpstream(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	const user, password = "bot", "s3cret"
	up := testregistry.Start(t, testregistry.WithTokenAuth(user, password))
	app := testregistry.RandomImage(t, 2, 2048, types.OCIManifestSchema1)
	appDigest := up.Push(t, "team/secret", "1.0", app)
	other := testregistry.RandomImage(t, 1, 2048, types.DockerManifestSchema2)
	up.Push(t, "team/other", "1.0", other)

	pwFile := writeFile(t, "password", password+"\n", 0o600)
	conf := writeFile(t, "portcullis.yaml", `upstreams:
  - name: private.test
    url: `+up.URL()+`
    username: `+user+`
    password_file: `+pwFile+`
    tag_ttl: 1s
`, 0o644)
	p := startPortcullis(t, "--config", conf)
	up.ResetCounts()
	ref := p.Addr + "/private.test/team/secret"

	pull := func(t *testing.T, ref string, img v1.Image) string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "layout")
		res := mustCrane(ctx, t, "pull", "-v", "--insecure", "--format", "oci", ref, dir)
		root := clients.LayoutRoot(t, dir, "")
		store, b := layoutManifest(t, dir, root)
		assertStoredImage(t, "crane pull "+ref, store, b, img)
		return res.Stderr
	}

	var craneLogs strings.Builder
	craneLogs.WriteString(pull(t, ref+":1.0", app))
	if n := up.TokenRequests(); n != 1 {
		t.Errorf("first pull: %d token requests; want 1 (one scope, repository:team/secret:pull)", n)
	}

	// Past tag_ttl the tag is revalidated with a HEAD that reuses the
	// cached token; by digest everything is served from cache.
	time.Sleep(1100 * time.Millisecond)
	craneLogs.WriteString(pull(t, ref+":1.0", app))
	if n := up.Count("HEAD", "^/v2/team/secret/manifests/1.0$"); n != 1 {
		t.Errorf("second pull past tag_ttl: upstream saw %d HEAD manifests/1.0; want 1 revalidation", n)
	}
	before := up.Count("", "")
	craneLogs.WriteString(pull(t, ref+"@"+appDigest.String(), app))
	if n := up.Count("", "") - before; n != 0 {
		t.Errorf("pull by digest: upstream saw %d requests; want 0 (all cached)", n)
	}
	if n := up.TokenRequests(); n != 1 {
		t.Errorf("after a revalidation and a pull by digest: %d token requests; want still 1 (token cached per scope)", n)
	}

	// Another repository is another scope: exactly one more token.
	craneLogs.WriteString(pull(t, p.Addr+"/private.test/team/other:1.0", other))
	if n := up.TokenRequests(); n != 2 {
		t.Errorf("after pulling a second repository: %d token requests; want 2", n)
	}

	// crane ran with -v, which dumps every response: it never got a 401
	// or a challenge, so it never needed (or was asked for) credentials.
	cl := strings.ToLower(craneLogs.String())
	if strings.Contains(cl, "www-authenticate") || strings.Contains(cl, "<-- 401 ") {
		t.Errorf("crane saw an authentication challenge from portcullis:\n%s", clip(craneLogs.String(), 8<<10))
	}
	for _, l := range requestLog(t, p) {
		if l.Status == 401 {
			t.Errorf("portcullis answered crane 401: %s", l)
		}
	}
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	for where, s := range map[string]string{"portcullis' log": p.Logs.String(), "crane's output": craneLogs.String()} {
		if strings.Contains(s, password) || strings.Contains(s, basic) {
			t.Errorf("the upstream password appears in %s", where)
		}
	}
}

// TestUpstreamDown: the upstream goes away. An image pulled before still
// pulls by tag (the last known digest, served stale once tag_ttl has passed);
// an image never pulled fails fast with an error naming the upstream.
func TestUpstreamDown(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	up := testregistry.Start(t)
	img := testregistry.RandomImage(t, 2, 2048, types.OCIManifestSchema1)
	up.Push(t, "team/app", "1.0", img)
	up.Push(t, "team/never", "1.0", testregistry.RandomImage(t, 1, 1024, types.OCIManifestSchema1))
	conf := writeFile(t, "portcullis.yaml", `upstreams:
  - name: flaky.test
    url: `+up.URL()+`
    tag_ttl: 1s
`, 0o644)
	p := startPortcullis(t, "--config", conf)
	ref := p.Addr + "/flaky.test/team/app:1.0"
	manifestURL := p.URL + "/v2/flaky.test/team/app/manifests/1.0"
	const accept = "application/vnd.oci.image.manifest.v1+json"

	pull := func(t *testing.T) {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "layout")
		mustCrane(ctx, t, "pull", "--insecure", "--format", "oci", ref, dir)
		root := clients.LayoutRoot(t, dir, "")
		store, b := layoutManifest(t, dir, root)
		assertStoredImage(t, "crane pull "+ref, store, b, img)
	}
	pull(t)
	if resp, _ := httpGet(ctx, t, manifestURL, accept); resp.StatusCode != 200 {
		t.Fatalf("warm-up GET %s = %s", manifestURL, resp.Status)
	}

	up.Stop()
	time.Sleep(1100 * time.Millisecond) // past tag_ttl: the tag must be revalidated, and cannot be
	pull(t)
	// The first two requests for the tag were the warm pull and GET.
	tagLines := requestsFor(t, p, "/team/app/manifests/1.0", 3)
	if len(tagLines) < 3 {
		t.Fatalf("portcullis logged no request for the tag after the upstream stopped: %v", tagLines)
	}
	if tagLines = tagLines[2:]; slices.ContainsFunc(tagLines, func(l logLine) bool { return l.Cache != "stale" || l.Status != 200 }) {
		t.Errorf("crane's tag requests with the upstream down: %v; want 200 with cache=stale", tagLines)
	}
	resp, body := httpGet(ctx, t, manifestURL, accept)
	if resp.StatusCode != 200 || resp.Header.Get("Portcullis-Cache") != "stale" ||
		!strings.HasPrefix(resp.Header.Get("Warning"), "110 ") || string(body) != string(raw(t, img)) {
		t.Errorf("GET %s with the upstream down = %s, Portcullis-Cache %q, Warning %q, body %s; want 200, stale, a 110 warning and the pushed manifest",
			manifestURL, resp.Status, resp.Header.Get("Portcullis-Cache"), resp.Header.Get("Warning"), sha256Of(body))
	}

	// An image never pulled: Portcullis answers at once, 503 UNAVAILABLE,
	// naming the upstream (after its own two quick retries of the refused
	// connection, 100 ms and 200 ms apart).
	neverURL := p.URL + "/v2/flaky.test/team/never/manifests/1.0"
	start := time.Now()
	resp, body = httpGet(ctx, t, neverURL, accept)
	if took := time.Since(start); resp.StatusCode != 503 || took > time.Second ||
		!strings.Contains(string(body), `"UNAVAILABLE"`) || !strings.Contains(string(body), "flaky.test/team/never:1.0") {
		t.Errorf("GET %s with the upstream down = %s after %s: %s; want 503 UNAVAILABLE naming flaky.test/team/never:1.0 within 1s",
			neverURL, resp.Status, took.Round(time.Millisecond), body)
	}

	never := p.Addr + "/flaky.test/team/never:1.0"
	res, err := crane(ctx, t, "pull", "--insecure", "--format", "oci", never, filepath.Join(t.TempDir(), "never"))
	if err == nil {
		t.Fatalf("crane pull %s succeeded with the upstream down and nothing cached", never)
	}
	// crane echoes the URL it asked for, which names flaky.test too: look
	// at the message Portcullis wrote, after the error code.
	_, msg, _ := strings.Cut(res.Stderr[max(0, strings.LastIndex(res.Stderr, "Error: ")):], "UNAVAILABLE: ")
	if !strings.Contains(msg, "flaky.test/team/never:1.0") || !strings.Contains(msg, "upstream unreachable") {
		t.Errorf("crane's error does not say the upstream flaky.test is unreachable:\n%s", res.Stderr)
	}
	// crane retries a 503 itself (logging "retrying" for each failed
	// attempt): 3 attempts, sleeping 1 s then 3 s (+10 % jitter), 4.4 s
	// that no server can save. What is left is Portcullis' answers and
	// crane's own start-up.
	attempts := max(1, strings.Count(res.Stderr, "retrying GET"))
	lines := requestsFor(t, p, "/team/never/", 1+attempts)[1:] // after the plain GET
	var answered time.Duration
	for _, l := range lines {
		answered += time.Duration(l.Duration)
		if l.Status != 503 || time.Duration(l.Duration) > time.Second {
			t.Errorf("%s: want 503 within 1s", l)
		}
	}
	const craneBackoff = 4400 * time.Millisecond
	if len(lines) != attempts || res.Elapsed > craneBackoff+2*time.Second {
		t.Errorf("crane failed after %s (%d attempts, %d logged, Portcullis answering in %s in all); want at most %s of crane's own backoff + 2s",
			res.Elapsed.Round(time.Millisecond), attempts, len(lines), answered.Round(time.Millisecond), craneBackoff)
	}
	t.Logf("never-pulled image: crane failed after %s, %d attempts, Portcullis answered in %s in total",
		res.Elapsed.Round(time.Millisecond), attempts, answered.Round(time.Millisecond))
}
