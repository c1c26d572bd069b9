// Package conformance runs the OCI distribution-spec conformance suite
// (github.com/opencontainers/distribution-spec/conformance, a standalone
// program configured by OCI_* variables; see suite_test.go for how it is
// built) against Portcullis, with testregistry as the upstream.
//
// TestConformance has two parts:
//
//   - pull-only: content is seeded in the upstream (images, a multi-platform
//     index, artifacts with a subject) and the suite runs with
//     OCI_API_PUSH=false against Portcullis, naming that content in its
//     OCI_RO_DATA_* variables and routing by path prefix
//     (/v2/registry.test/...). It runs cold (everything fetched from the
//     upstream) and then warm (from the cache) against one Portcullis. Every
//     test the suite runs must pass, and each pull test must pass once per
//     seeded tag, manifest or blob.
//   - push-upstream: the suite runs with pushes enabled through a small
//     router that sends its writes to the upstream and its reads (GET, HEAD)
//     to Portcullis (default-upstream routing), so content the suite
//     generated itself is pulled through the proxy and compared byte for
//     byte. The upstream's own push conformance is not ours to judge: the
//     same configuration first runs through the same router with reads going
//     to the upstream itself, and every test name that passes there must
//     pass as often through Portcullis.
//
// Each part first runs directly against the upstream (a few tens of
// milliseconds for pull-only, about a second for push-upstream); a failure
// there is a problem of the fixture or the configuration, not of Portcullis.
// Set PORTCULLIS_CONFORMANCE_RESULTS=DIR to keep each run's junit.xml and
// report.html (with every request and response) in DIR.
package conformance

import (
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

// upstreamName is the upstream's name on Portcullis: it has a dot, so a
// leading path component "registry.test/" routes to it explicitly.
const upstreamName = "registry.test"

func TestConformance(t *testing.T) {
	// ggcr's registry (behind testregistry) reports digest mismatches, which
	// the suite provokes on purpose, on the standard logger.
	logOut := log.Writer()
	log.SetOutput(io.Discard)
	t.Cleanup(func() { log.SetOutput(logOut) })

	suiteBinary(t) // build (or find cached) before any server starts
	t.Run("pull-only", testPullOnly)
	t.Run("push-upstream", testPushUpstream)
}

// baseConfig is the suite configuration shared by every run: plain HTTP on
// loopback, and no deletes (a pull-through cache does not delete, and with
// the push-upstream router a delete at the upstream followed by a read from
// the cache tests cache expiry, not the distribution API).
func baseConfig(registry, repo1, repo2 string) suiteConfig {
	return suiteConfig{
		"REGISTRY":             registry,
		"TLS":                  "disabled",
		"VERSION":              "1.1",
		"LOG":                  "error",
		"REPO1":                repo1,
		"REPO2":                repo2,
		"API_BLOBS_DELETE":     "false",
		"API_MANIFESTS_DELETE": "false",
		"API_TAGS_DELETE":      "false",
	}
}

// seeded is the read-only content the pull-only runs ask for.
type seeded struct {
	tags, manifests, blobs, referrers []string
}

func (s seeded) config(registry, repo string) suiteConfig {
	c := baseConfig(registry, repo, repo+"-2")
	c["API_PUSH"] = "false"
	c["RO_DATA_TAGS"] = strings.Join(s.tags, " ")
	c["RO_DATA_MANIFESTS"] = strings.Join(s.manifests, " ")
	c["RO_DATA_BLOBS"] = strings.Join(s.blobs, " ")
	c["RO_DATA_REFERRERS"] = strings.Join(s.referrers, " ")
	return c
}

// seed pushes a variety of content into repo on the upstream: two images
// (one with several layers, one under two tags), a multi-platform index, and
// two artifacts whose subject is the first image (one tagged, one by digest
// only). The referrers of both images are queried; the second has none.
func seed(t *testing.T, up *testregistry.Registry, repo string) seeded {
	t.Helper()
	var s seeded
	manifests := map[string]bool{}
	blobs := map[string]bool{}
	addImage := func(img v1.Image) v1.Descriptor {
		t.Helper()
		d, err := partial.Descriptor(img)
		if err != nil {
			t.Fatal(err)
		}
		manifests[d.Digest.String()] = true
		cfg, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		blobs[cfg.String()] = true
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			ld, err := l.Digest()
			if err != nil {
				t.Fatal(err)
			}
			blobs[ld.String()] = true
		}
		return *d
	}

	img1 := testregistry.RandomImage(t, 3, 2048, types.OCIManifestSchema1)
	img2 := testregistry.RandomImage(t, 1, 4096, types.OCIManifestSchema1)
	idx := testregistry.MultiArchIndex(t, types.OCIImageIndex, "linux/amd64", "linux/arm64")

	d1 := addImage(img1)
	if got := up.Push(t, repo, "v1", img1); got != d1.Digest {
		t.Fatalf("pushed %s, upstream says %s", d1.Digest, got)
	}
	d2 := addImage(img2)
	up.Push(t, repo, "v2", img2)
	up.Push(t, repo, "latest", img2) // two tags on one manifest
	s.tags = append(s.tags, "v1", "v2", "latest")

	idxDigest := up.PushIndex(t, repo, "multi", idx)
	s.tags = append(s.tags, "multi")
	manifests[idxDigest.String()] = true
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, child := range im.Manifests {
		img, err := idx.Image(child.Digest)
		if err != nil {
			t.Fatal(err)
		}
		addImage(img)
	}

	sbom := testregistry.Artifact(t, d1, "application/vnd.example.sbom.v1+json", []byte(`{"packages":[]}`))
	sig := testregistry.Artifact(t, d1, "application/vnd.example.signature.v1", []byte("not really a signature"))
	addImage(sbom)
	up.Push(t, repo, "v1-sbom", sbom)
	s.tags = append(s.tags, "v1-sbom")
	addImage(sig)
	up.Push(t, repo, "", sig) // by digest only
	s.referrers = []string{d1.Digest.String(), d2.Digest.String()}

	s.manifests = sortedKeys(manifests)
	s.blobs = sortedKeys(blobs)
	return s
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// startPortcullis runs Portcullis with up as its one (and default)
// upstream. A non-empty tagTTL sets how long a tag resolution is trusted
// (config key tag_ttl; the default is 5 minutes).
func startPortcullis(t *testing.T, up *testregistry.Registry, tagTTL string) *harness.Portcullis {
	t.Helper()
	bin := harness.BuildPortcullis(t)
	if tagTTL == "" {
		return harness.StartPortcullis(t, bin, "--upstream", upstreamName+"="+up.URL(), "--default-upstream", upstreamName)
	}
	cfg := filepath.Join(t.TempDir(), "portcullis.yaml")
	yaml := fmt.Sprintf("default_upstream: %s\nupstreams:\n  - name: %s\n    url: %s\n    tag_ttl: %s\n", upstreamName, upstreamName, up.URL(), tagTTL)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return harness.StartPortcullis(t, bin, "--config", cfg)
}

func testPullOnly(t *testing.T) {
	const repo = "conformance/pull"
	up := testregistry.Start(t)
	s := seed(t, up, repo)
	want := s.expected()

	t.Run("direct", func(t *testing.T) {
		res := runSuite(t, s.config(up.Host(), repo))
		t.Logf("directly against the upstream: %s", res.summary())
		checkPullOnly(t, res, want)
	})

	p := startPortcullis(t, up, "")
	// Explicit routing: /v2/registry.test/conformance/pull/...
	cfg := s.config(p.Addr, upstreamName+"/"+repo)
	for _, pass := range []string{"cold", "warm"} {
		t.Run("proxy-"+pass, func(t *testing.T) {
			up.ResetCounts()
			res := runSuite(t, cfg)
			t.Logf("through portcullis (%s cache): %s", pass, res.summary())
			t.Logf("the upstream saw %d manifest, %d blob, %d tag list and %d referrers requests",
				up.Count("", "/manifests/"), up.Count("", "/blobs/"), up.Count("", "/tags/list"), up.Count("", "/referrers/"))
			checkPullOnly(t, res, want)
		})
	}
}

// expected is how many times each pull test must pass: once per seeded tag,
// manifest or blob, once for the referrers of all subjects, and once each for
// the suite's own checks (ping, empty repository queries, missing manifests,
// malformed digest).
func (s seeded) expected() map[string]int {
	return map[string]int{
		"ping":                                   1,
		"empty/tag list":                         1,
		"empty/referrers":                        1,
		"read-only/tag-list":                     1,
		"read-only/head/manifest-head-by-tag":    len(s.tags),
		"read-only/head/manifest-head-by-digest": len(s.manifests),
		"read-only/head/blob-head":               len(s.blobs),
		"read-only/pull/manifest-by-tag":         len(s.tags),
		"read-only/pull/manifest-by-digest":      len(s.manifests),
		"read-only/pull/blob-get":                len(s.blobs),
		"read-only/referrers":                    1,
		"missing-manifest/by-digest":             1,
		"missing-manifest/by-tag":                1,
		"invalid-digest-format/manifest-get":     1,
	}
}

// checkPullOnly fails unless every test the suite ran passed (tests it
// skipped because the registry said it lacks a feature count as failures:
// a pull-through cache must serve every read API), and each expected pull
// test passed as often as there is seeded content for it.
func checkPullOnly(t *testing.T, res *suiteResult, want map[string]int) {
	t.Helper()
	if len(res.Cases) == 0 || res.Tests == 0 {
		t.Fatalf("the suite ran no tests: %s", res.summary())
	}
	bad := res.filter(func(c junitCase) bool { return c.failed() || c.unsupported() })
	if len(bad) > 0 || res.Failures > 0 || res.Errors > 0 {
		t.Errorf("%d of %d conformance tests failed (suite counts %d failures, %d errors):%s",
			len(bad), len(res.Cases), res.Failures, res.Errors, describe(bad, 10))
	}
	got := res.passedByName()
	for _, name := range sortedKeys(boolKeys(want)) {
		if got[name] != want[name] {
			t.Errorf("test %q passed %d times, want %d", name, got[name], want[name])
		}
	}
	for _, c := range res.Cases {
		if c.Status == "passed" {
			if _, ok := want[c.short()]; !ok {
				t.Errorf("unexpected passing test %q: update expected()", c.short())
			}
		}
	}
}

func boolKeys[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func testPushUpstream(t *testing.T) {
	cfg := func(registry string) suiteConfig {
		c := baseConfig(registry, "conformance/repo1", "conformance/repo2")
		c["API_PUSH"] = "true"
		return c
	}

	// Both runs go through the same router (and its upload Location fix);
	// they differ only in where reads go.
	var direct *suiteResult
	t.Run("direct", func(t *testing.T) {
		up := testregistry.Start(t)
		router := splitRouter(t, up.URL(), up.URL())
		direct = runSuite(t, cfg(strings.TrimPrefix(router.URL, "http://")))
		t.Logf("through the router with reads going to the upstream: %s", direct.summary())
		if direct.count("passed") == 0 {
			t.Fatalf("no test passed directly against the upstream")
		}
		if bad := direct.filter(junitCase.failed); len(bad) > 0 {
			t.Logf("the upstream itself fails %d tests (not judged through the proxy):%s", len(bad), brief(bad))
		}
	})
	if direct == nil || direct.count("passed") == 0 {
		t.Fatal("no baseline from the direct run")
	}

	t.Run("proxy", func(t *testing.T) {
		up := testregistry.Start(t)
		// The suite re-pushes tags ("image", "index", "tagged-artifact")
		// with new content and reads them back at once; with the default
		// 5 minute tag TTL Portcullis rightly serves the earlier digest.
		// tag_ttl: 0 makes every tag read revalidate upstream.
		p := startPortcullis(t, up, "0")
		router := splitRouter(t, p.URL, up.URL()) // reads via portcullis
		// Default-upstream routing: /v2/conformance/repo1/... on Portcullis.
		res := runSuite(t, cfg(strings.TrimPrefix(router.URL, "http://")))
		t.Logf("pushes to the upstream, reads through portcullis: %s", res.summary())
		if bad := res.filter(junitCase.failed); len(bad) > 0 {
			t.Logf("%d tests fail through portcullis (any that pass directly are reported as errors below):%s", len(bad), brief(bad))
		}
		checkAgainstBaseline(t, direct, res)
	})
}

// checkAgainstBaseline fails for every test name that passed fewer times
// through the proxy than directly against the upstream, and lists what
// failed under that name through the proxy.
func checkAgainstBaseline(t *testing.T, direct, proxied *suiteResult) {
	t.Helper()
	if len(proxied.Cases) == 0 || proxied.Tests == 0 {
		t.Fatalf("the suite ran no tests through the proxy: %s", proxied.summary())
	}
	want, got := direct.passedByName(), proxied.passedByName()
	var regressed []string
	for _, name := range sortedKeys(boolKeys(want)) {
		if got[name] < want[name] {
			regressed = append(regressed, name)
		}
	}
	if len(regressed) == 0 {
		return
	}
	byName := map[string][]junitCase{}
	for _, c := range proxied.Cases {
		if c.Status != "passed" {
			byName[c.short()] = append(byName[c.short()], c)
		}
	}
	var b strings.Builder
	shown := 0
	for _, name := range regressed {
		fmt.Fprintf(&b, "\n%s: passed %d times directly, %d through portcullis", name, want[name], got[name])
		n := 0
		if shown < 15 {
			n = 1
		}
		b.WriteString(describe(byName[name], n))
		shown++
	}
	t.Errorf("%d test names regress through portcullis (pushes to the upstream, reads through the proxy):%s", len(regressed), b.String())
}
