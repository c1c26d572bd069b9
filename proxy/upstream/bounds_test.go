package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/proxy/upstream"
)

// serveManifest is an upstream answering every manifest GET with body and
// the given Content-Type.
func serveManifest(t *testing.T, contentType, body string) *upstream.Client {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		} else {
			w.Header()["Content-Type"] = nil // no sniffing
		}
		io.WriteString(w, body)
	}))
	t.Cleanup(up.Close)
	return newClient(t, upstream.Config{URL: up.URL})
}

func TestManifestContentIsChecked(t *testing.T) {
	const (
		ociManifest = "application/vnd.oci.image.manifest.v1+json"
		ociIndex    = "application/vnd.oci.image.index.v1+json"
		dockerV2    = "application/vnd.docker.distribution.manifest.v2+json"
		dockerList  = "application/vnd.docker.distribution.manifest.list.v2+json"
		image       = `{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:aa","size":1},"layers":[]}`
		artifact    = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.sbom","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44","size":2},"layers":[]}`
		index       = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`
		dockerImage = `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{},"layers":[]}`
	)
	tests := []struct {
		name, contentType, body string
		wantType                string // "" means refused
	}{
		{"OCI manifest", ociManifest, image, ociManifest},
		{"OCI manifest with charset", ociManifest + "; charset=utf-8", image, ociManifest},
		{"artifact", ociManifest, artifact, ociManifest},
		{"OCI index", ociIndex, index, ociIndex},
		{"Docker schema 2", dockerV2, dockerImage, dockerV2},
		{"Docker list", dockerList, `{"schemaVersion":2,"mediaType":"` + dockerList + `","manifests":[{}]}`, dockerList},
		{"generic type, mediaType field decides", "application/json", index, ociIndex},
		{"no Content-Type, mediaType field decides", "", dockerImage, dockerV2},
		{"HTML page", "text/html", "<html>metadata</html>", ""},
		{"HTML page shaped like a manifest", "text/html; charset=utf-8", artifact, ""},
		{"cloud metadata JSON", "application/json", `{"Code":"Success","AccessKeyId":"AKIA"}`, ""},
		{"generic type, no mediaType field", "application/json", image, ""},
		{"not JSON", ociManifest, "not json", ""},
		{"JSON array", ociManifest, "[]", ""},
		{"schema 1", "application/vnd.docker.distribution.manifest.v1+prettyjws", `{"schemaVersion":1,"name":"x","tag":"1","fsLayers":[]}`, ""},
		{"schemaVersion 1 under a v2 type", dockerV2, `{"schemaVersion":1,"config":{}}`, ""},
		{"schemaVersion missing", ociManifest, `{"config":{},"layers":[]}`, ""},
		{"mediaType contradicts Content-Type", ociManifest, index, ""},
		{"index without manifests", ociIndex, `{"schemaVersion":2}`, ""},
		{"manifest without config", ociManifest, `{"schemaVersion":2,"layers":[]}`, ""},
		{"layers not an array", ociManifest, `{"schemaVersion":2,"config":{},"layers":{}}`, ""},
		{"bad Content-Type", "application/vnd.oci.image.manifest.v1+json;;;=", image, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := serveManifest(t, tc.contentType, tc.body).GetManifest(context.Background(), "team/app", "1.0", nil)
			if tc.wantType == "" {
				if !errors.Is(err, upstream.ErrInvalidManifest) {
					t.Fatalf("got %+v, %v; want ErrInvalidManifest", m, err)
				}
				if !strings.Contains(err.Error(), "hostile.test") {
					t.Errorf("error does not name the upstream: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.MediaType != tc.wantType || string(m.Body) != tc.body {
				t.Fatalf("media type %q, body %q; want %q and the body as sent", m.MediaType, m.Body, tc.wantType)
			}
		})
	}
}

// heapAllocs runs f and returns the bytes it allocated.
func heapAllocs(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// A 9 MB WWW-Authenticate header used to be parsed whole, one map per
// "challenge": hundreds of MB per 401.
func TestHugeWWWAuthenticateIsBounded(t *testing.T) {
	huge := "Bearer " + strings.Repeat("a ", 9<<20/2)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", huge)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer up.Close()
	c := newClient(t, upstream.Config{URL: up.URL})
	var err error
	allocated := heapAllocs(func() { _, err = c.GetManifest(context.Background(), "team/app", "1.0", nil) })
	t.Logf("9 MB WWW-Authenticate: %v; allocated %d KiB", err, allocated>>10)
	if err == nil {
		t.Fatal("a 9 MB WWW-Authenticate was accepted")
	}
	if allocated > 16<<20 {
		t.Fatalf("a 9 MB WWW-Authenticate cost %d MiB of allocations, want < 16", allocated>>20)
	}
}

func TestWWWAuthenticateBounds(t *testing.T) {
	tests := []struct {
		name   string
		header string
		ok     bool
	}{
		{"Docker Hub", `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`, true},
		{"over the byte bound", `Bearer realm="` + strings.Repeat("x", 9<<10) + `"`, false},
		{"too many challenges", strings.Repeat("Foo, ", 17) + `Bearer realm="x"`, false},
		{"too many parameters", `Bearer ` + manyParams(17), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tokens := 0
			mux := http.NewServeMux()
			mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) { tokens++; io.WriteString(w, `{"token":"t"}`) })
			mux.HandleFunc("/v2/", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("WWW-Authenticate", strings.ReplaceAll(tc.header, "https://auth.docker.io", "http://"+r.Host))
				w.WriteHeader(http.StatusUnauthorized)
			})
			up := httptest.NewServer(mux)
			defer up.Close()
			_, err := newClient(t, upstream.Config{URL: up.URL}).GetManifest(context.Background(), "team/app", "1.0", nil)
			if tc.ok {
				if tokens != 1 {
					t.Fatalf("token requests %d, want 1 (err %v)", tokens, err)
				}
				return
			}
			if !errors.Is(err, upstream.ErrTooLarge) || tokens != 0 {
				t.Fatalf("got %v (token requests %d), want ErrTooLarge and none", err, tokens)
			}
		})
	}
}

func manyParams(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `p%d="1", `, i)
	}
	return b.String()
}

// tagPages serves a tag list of pages pages, each holding perPage tags,
// linked with Link headers; linkTo rewrites the next link when set.
func tagPages(t *testing.T, pages, perPage int, tagLen int, linkTo func(r *http.Request, next int) string) *httptest.Server {
	t.Helper()
	tag := strings.Repeat("t", tagLen)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page := 0
		fmt.Sscan(r.URL.Query().Get("page"), &page)
		if page+1 < pages {
			next := "/v2/team/app/tags/list?page=" + fmt.Sprint(page+1)
			if linkTo != nil {
				next = linkTo(r, page+1)
			}
			w.Header().Set("Link", "<"+next+`>; rel="next"`)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"name":"team/app","tags":[`)
		for i := range perPage {
			if i > 0 {
				io.WriteString(w, ",")
			}
			io.WriteString(w, `"`+tag+`"`)
		}
		io.WriteString(w, "]}")
	}))
	t.Cleanup(up.Close)
	return up
}

func TestTagListingBounds(t *testing.T) {
	tests := []struct {
		name                   string
		pages, perPage, tagLen int
		linkTo                 func(r *http.Request, next int) string
		wantTags               int // -1: refused
		wantErr                error
	}{
		{"paged, under the bounds", 5, 1000, 8, nil, 5000, nil},
		{"100,000 tags", 100, 1000, 1, nil, 100_000, nil},
		{"100,001 tags", 101, 1000, 1, nil, -1, upstream.ErrTooLarge},
		{"one page of 200,000 tags", 1, 200_000, 1, nil, -1, upstream.ErrTooLarge},
		{"17 MiB over pages", 17, 16, 64 << 10, nil, -1, upstream.ErrTooLarge},
		{"one 17 MiB tag", 1, 1, 17 << 20, nil, -1, upstream.ErrTooLarge},
		{"over 1000 pages", 1001, 1, 1, nil, -1, upstream.ErrTooLarge},
		{"link to another port", 3, 1, 1, func(r *http.Request, next int) string {
			return "http://127.0.0.1:1/v2/team/app/tags/list?page=" + fmt.Sprint(next)
		}, -1, nil},
		{"link to another repository", 3, 1, 1, func(r *http.Request, next int) string {
			return "/v2/team/other/tags/list?page=" + fmt.Sprint(next)
		}, -1, nil},
		{"absolute link on the same origin", 3, 1, 1, func(r *http.Request, next int) string {
			return "http://" + r.Host + "/v2/team/app/tags/list?page=" + fmt.Sprint(next)
		}, 3, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := tagPages(t, tc.pages, tc.perPage, tc.tagLen, tc.linkTo)
			tags, err := newClient(t, upstream.Config{URL: up.URL}).Tags(context.Background(), "team/app")
			if tc.wantTags >= 0 {
				if err != nil || len(tags) != tc.wantTags {
					t.Fatalf("%d tags, %v; want %d", len(tags), err, tc.wantTags)
				}
				return
			}
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("%d tags, %v; want an error (%v)", len(tags), err, tc.wantErr)
			}
		})
	}
}

// A hostile tag list: 16 MB pages of one-character tags, page after page.
// It used to be read up to 1,000 pages deep (gigabytes); the bound stops it
// at 16 MiB of body and 100,000 tags.
func TestHostileTagListMemory(t *testing.T) {
	up := tagPages(t, 8, (16<<20-64)/4, 1, nil) // 8 pages just under 16 MiB: `"t",` is 4 bytes
	c := newClient(t, upstream.Config{URL: up.URL})
	var err error
	allocated := heapAllocs(func() { _, err = c.Tags(context.Background(), "team/app") })
	t.Logf("8 pages of 16 MB: %v; allocated %d MiB", err, allocated>>20)
	if !errors.Is(err, upstream.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if allocated > 64<<20 {
		t.Fatalf("allocated %d MiB, want < 64", allocated>>20)
	}
}
