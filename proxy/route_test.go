package proxy

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// The spec's own expressions, the oracle for the hand-written matchers.
var (
	specComponent = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)
	specTag       = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

func TestGrammarMatchesSpec(t *testing.T) {
	for _, s := range []string{"", "a", "a.b", "a..b", "a_b", "a__b", "a___b", "a-b", "a---b", "-a", "a-", "a.", ".a", "A", "a/b",
		"_", "_a", "a_", "9", "a.b-c__d_e", strings.Repeat("x", 128), strings.Repeat("x", 129), "Tag.1-rc_2", "-tag", ".tag"} {
		if got, want := validComponent(s), specComponent.MatchString(s); got != want {
			t.Errorf("validComponent(%q) = %v, spec says %v", s, got, want)
		}
		if got, want := validTag(s), specTag.MatchString(s); got != want {
			t.Errorf("validTag(%q) = %v, spec says %v", s, got, want)
		}
	}
}

func FuzzGrammar(f *testing.F) {
	f.Add("a.b-c__d")
	f.Add("Tag_1.0-rc")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validComponent(s), specComponent.MatchString(s); got != want {
			t.Fatalf("validComponent(%q) = %v, spec says %v", s, got, want)
		}
		if got, want := validTag(s), specTag.MatchString(s); got != want {
			t.Fatalf("validTag(%q) = %v, spec says %v", s, got, want)
		}
	})
}

func TestRouteParse(t *testing.T) {
	rt := newRouter([]string{"docker.io", "ghcr.io", "127.0.0.1:5001"}, "docker.io")
	dgst := "sha256:" + strings.Repeat("a", 64)
	tests := []struct {
		url      string
		endpoint endpoint
		upstream string
		repo     string
		ref      string
		code     string // expected error code, "" for success
	}{
		{url: "/v2/", endpoint: endpointBase},
		{url: "/v2", endpoint: endpointBase},
		{url: "/v2/_catalog", endpoint: endpointCatalog},
		// Docker registry-mirrors: no registry in the path, library/ implied.
		{url: "/v2/library/alpine/manifests/3.20", endpoint: endpointManifest, upstream: "docker.io", repo: "library/alpine", ref: "3.20"},
		{url: "/v2/alpine/manifests/3.20", endpoint: endpointManifest, upstream: "docker.io", repo: "library/alpine", ref: "3.20"},
		// containerd hosts.toml mirrors: ?ns= selects the upstream.
		{url: "/v2/org/app/manifests/1.0?ns=ghcr.io", endpoint: endpointManifest, upstream: "ghcr.io", repo: "org/app", ref: "1.0"},
		{url: "/v2/library/alpine/blobs/" + dgst + "?ns=docker.io", endpoint: endpointBlob, upstream: "docker.io", repo: "library/alpine", ref: dgst},
		{url: "/v2/alpine/manifests/latest?ns=docker.io", endpoint: endpointManifest, upstream: "docker.io", repo: "library/alpine", ref: "latest"},
		{url: "/v2/org/app/manifests/1.0?ns=GHCR.IO", endpoint: endpointManifest, upstream: "ghcr.io", repo: "org/app", ref: "1.0"},
		// Explicit path prefix.
		{url: "/v2/ghcr.io/org/app/manifests/1.0", endpoint: endpointManifest, upstream: "ghcr.io", repo: "org/app", ref: "1.0"},
		{url: "/v2/127.0.0.1:5001/a/b/c/tags/list", endpoint: endpointTags, upstream: "127.0.0.1:5001", repo: "a/b/c"},
		{url: "/v2/ghcr.io/org/app/referrers/" + dgst, endpoint: endpointReferrers, upstream: "ghcr.io", repo: "org/app", ref: dgst},
		{url: "/v2/ghcr.io/org/app/manifests/" + dgst, endpoint: endpointManifest, upstream: "ghcr.io", repo: "org/app", ref: dgst},
		// A repository may itself contain endpoint words.
		{url: "/v2/ghcr.io/org/blobs/manifests/v1", endpoint: endpointManifest, upstream: "ghcr.io", repo: "org/blobs", ref: "v1"},
		{url: "/v2/ghcr.io/org/app/blobs/uploads/", endpoint: endpointUpload},
		{url: "/v2/ghcr.io/org/app/blobs/uploads/123", endpoint: endpointUpload},
		// Unknown registries are refused before any connection exists.
		{url: "/v2/evil.example/x/manifests/1", code: "NAME_UNKNOWN"},
		{url: "/v2/127.0.0.1:6000/x/manifests/1", code: "NAME_UNKNOWN"},
		{url: "/v2/localhost/x/manifests/1", code: "NAME_UNKNOWN"},
		{url: "/v2/x/manifests/1?ns=evil.example", code: "NAME_UNKNOWN"},
		// Bad names, references and path tricks.
		{url: "/v2/ghcr.io/Org/app/manifests/1", code: "NAME_INVALID"},
		{url: "/v2/ghcr.io/org/../app/manifests/1", code: "NAME_INVALID"},
		{url: "/v2/ghcr.io/org/./app/manifests/1", code: "NAME_INVALID"},
		{url: "/v2/ghcr.io/org//app/manifests/1", code: "NAME_INVALID"},
		{url: "/v2/ghcr.io%2Forg/app/manifests/1", code: "NAME_INVALID"},
		{url: "/v2/ghcr.io/org%2fapp/manifests/1", code: "NAME_INVALID"},
		{url: "/v2/ghcr.io/manifests/1", code: "NAME_INVALID"}, // registry alone is no repository
		{url: "/v2/ghcr.io/org/app/manifests/-bad", code: "MANIFEST_INVALID"},
		{url: "/v2/ghcr.io/org/app/manifests/" + strings.Repeat("t", 129), code: "MANIFEST_INVALID"},
		{url: "/v2/ghcr.io/org/app/manifests/sha256:abc", code: "MANIFEST_INVALID"},
		{url: "/v2/ghcr.io/org/app/blobs/sha256:" + strings.Repeat("A", 64), code: "DIGEST_INVALID"},
		{url: "/v2/ghcr.io/org/app/blobs/md5:" + strings.Repeat("a", 32), code: "DIGEST_INVALID"},
		{url: "/v2/ghcr.io/org/app/blobs/latest", code: "DIGEST_INVALID"},
		{url: "/v2/ghcr.io/org/app/referrers/latest", code: "DIGEST_INVALID"},
		{url: "/v2/ghcr.io/org/app", code: "NAME_UNKNOWN"},
		{url: "/v2/" + strings.Repeat("a/", 130) + "manifests/1", code: "NAME_INVALID"},
		// The query is parsed strictly: ns must not be lost or ambiguous.
		{url: "/v2/org/app/manifests/1.0?" + strings.Repeat("x=1&", 10_000) + "ns=ghcr.io", code: "UNSUPPORTED"},
		{url: "/v2/org/app/manifests/1.0?ns=ghcr.io&ns=docker.io", code: "NAME_INVALID"},
		{url: "/v2/org/app/manifests/1.0?ns=ghcr.io&ns=ghcr.io", code: "NAME_INVALID"},
		{url: "/v2/org/app/manifests/1.0?ns=ghcr.io&x=%zz", code: "UNSUPPORTED"},
		{url: "/v2/org/app/manifests/1.0?ns=ghcr.io;x=1", code: "UNSUPPORTED"},
		{url: "/v2/org/app/tags/list?n=10&last=a&ns=ghcr.io", endpoint: endpointTags, upstream: "ghcr.io", repo: "org/app"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			got, rerr := rt.parse(u)
			if tc.code != "" {
				if rerr == nil {
					t.Fatalf("parsed as %+v, want error %s", got, tc.code)
				}
				if rerr.Code != tc.code {
					t.Fatalf("error %s (%s), want %s", rerr.Code, rerr.Message, tc.code)
				}
				return
			}
			if rerr != nil {
				t.Fatalf("unexpected error %v", rerr)
			}
			if got.endpoint != tc.endpoint || got.upstream != tc.upstream || got.repo != tc.repo || got.ref != tc.ref {
				t.Fatalf("got %+v, want endpoint=%d upstream=%q repo=%q ref=%q", got, tc.endpoint, tc.upstream, tc.repo, tc.ref)
			}
		})
	}
}

func TestUnknownRegistryErrorNamesConfiguredOnes(t *testing.T) {
	rt := newRouter([]string{"ghcr.io", "quay.io"}, "")
	u, _ := url.Parse("/v2/evil.example/x/manifests/1")
	_, rerr := rt.parse(u)
	if rerr == nil || rerr.Status != http.StatusNotFound || !strings.Contains(rerr.Message, "ghcr.io, quay.io") {
		t.Fatalf("got %+v", rerr)
	}
	u, _ = url.Parse("/v2/library/alpine/manifests/1")
	if _, rerr := rt.parse(u); rerr == nil || rerr.Code != "NAME_UNKNOWN" {
		t.Fatalf("no default upstream: got %+v, want NAME_UNKNOWN", rerr)
	}
}

func FuzzRouteParse(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/library/alpine/manifests/3.20", "/v2/ghcr.io/o/a/blobs/sha256:" + strings.Repeat("0", 64),
		"/v2/x/tags/list?n=1&last=a", "/v2/a/referrers/sha256:" + strings.Repeat("f", 64) + "?ns=ghcr.io", "/v2/%2e%2e/x", "/v2/a/b/blobs/uploads/"} {
		f.Add(s)
	}
	rt := newRouter([]string{"docker.io", "ghcr.io"}, "docker.io")
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		r, rerr := rt.parse(u)
		if rerr != nil {
			if rerr.Status < 400 || rerr.Code == "" {
				t.Fatalf("bad error for %q: %+v", raw, rerr)
			}
			return
		}
		switch r.endpoint {
		case endpointManifest, endpointBlob, endpointTags, endpointReferrers:
			if r.upstream != "docker.io" && r.upstream != "ghcr.io" {
				t.Fatalf("%q routed to unconfigured upstream %q", raw, r.upstream)
			}
			if validateRepo(r.repo) != nil || strings.Contains(r.repo, "..") {
				t.Fatalf("%q gave invalid repo %q", raw, r.repo)
			}
		}
	})
}

// Routing a blob GET, which runs on every warm GET, allocates only what it
// keeps (the path's segments, the names joined): no empty query map, no
// slice to validate the repository's components. It took 5 before.
func TestRouteBlobAllocations(t *testing.T) {
	rt := newRouter([]string{"docker.io", "ghcr.io"}, "docker.io")
	u, err := url.Parse("/v2/team/app/blobs/" + digest.FromString("layer").String())
	if err != nil {
		t.Fatal(err)
	}
	if _, rerr := rt.parse(u); rerr != nil {
		t.Fatal(rerr)
	}
	if n := testing.AllocsPerRun(100, func() { rt.parse(u) }); n > 3 {
		t.Errorf("routing a blob GET allocates %.0f times, want at most 3", n)
	}
}
