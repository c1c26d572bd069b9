package proxy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/test/harness"
)

// get sends a GET with the given headers and returns status, the OCI error
// code (if any) and the body.
func get(t *testing.T, url string, header http.Header) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var oci struct {
		Errors []struct{ Code, Message string }
	}
	code := ""
	if json.Unmarshal(body, &oci) == nil && len(oci.Errors) == 1 {
		code = oci.Errors[0].Code
	}
	return resp.StatusCode, code, string(body)
}

// A 1 MB Accept header of 40,000 distinct types used to take ~45 s of CPU
// (quadratic de-duplication) and then be served; it is refused at once.
func TestHugeAcceptHeaderRefused(t *testing.T) {
	e := newEnv(t)
	img, _ := random.Image(256, 1)
	e.push(t, "team/app:1.0", img)
	var upstreamManifests atomic.Int64
	e.onUpstream = func(r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") {
			upstreamManifests.Add(1)
		}
	}
	var b strings.Builder
	for i := 0; b.Len() < 1_000_000; i++ {
		fmt.Fprintf(&b, "application/vnd.x-%d+json,", i)
	}
	status, code, body := get(t, e.proxy.URL+"/v2/team/app/manifests/1.0", http.Header{"Accept": {b.String()}})
	if status != http.StatusBadRequest || code != "UNSUPPORTED" {
		t.Fatalf("status %d code %q body %.200s", status, code, body)
	}
	if n := upstreamManifests.Load(); n != 0 {
		t.Fatalf("upstream asked %d times", n)
	}
	// An ordinary client is unaffected.
	status, _, body = get(t, e.proxy.URL+"/v2/team/app/manifests/1.0", http.Header{"Accept": {"application/vnd.docker.distribution.manifest.v2+json"}})
	if status != http.StatusOK {
		t.Fatalf("ordinary request: %d %.200s", status, body)
	}
}

// tag_ttl: 0 (RevalidateTags) asks the upstream on every request by tag.
func TestTagTTLZeroRevalidatesEveryRequest(t *testing.T) {
	tests := []struct {
		name      string
		ttl       time.Duration
		wantHeads int64
	}{
		{name: "revalidate always", ttl: proxy.RevalidateTags, wantHeads: 2},
		{name: "default trusts the first answer", ttl: 0, wantHeads: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withTagTTL(tc.ttl))
			img, _ := random.Image(256, 1)
			want := e.push(t, "team/app:1.0", img)
			var heads, gets atomic.Int64
			e.onUpstream = func(r *http.Request) {
				switch {
				case !strings.Contains(r.URL.Path, "/manifests/1.0"):
				case r.Method == http.MethodHead:
					heads.Add(1)
				case r.Method == http.MethodGet:
					gets.Add(1)
				}
			}
			for i := range 3 {
				resp, err := http.Get(e.proxy.URL + "/v2/team/app/manifests/1.0")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != want.String() {
					t.Fatalf("request %d: %d %s", i, resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
				}
			}
			if heads.Load() != tc.wantHeads || gets.Load() != 1 {
				t.Fatalf("upstream saw %d HEADs and %d GETs of the tag; want %d and 1", heads.Load(), gets.Load(), tc.wantHeads)
			}
		})
	}
}

// Past Go's limit of 10,000 query parameters url.URL.Query returned nothing,
// so ?ns= was dropped and the request went to the default upstream.
func TestTooManyQueryParametersRefused(t *testing.T) {
	e := newEnv(t)
	img, _ := random.Image(256, 1)
	e.push(t, "team/app:1.0", img)
	var asked atomic.Int64
	e.onUpstream = func(*http.Request) { asked.Add(1) }
	tests := []struct {
		name, query, code string
	}{
		{name: "ns past 10,000 parameters", query: strings.Repeat("x=1&", 10_000) + "ns=ghcr.io", code: "UNSUPPORTED"},
		{name: "n past 10,000 parameters", query: strings.Repeat("x=1&", 10_000) + "n=1", code: "UNSUPPORTED"},
		{name: "two registries", query: "ns=up.test&ns=ghcr.io", code: "NAME_INVALID"},
		{name: "bad escape", query: "ns=up.test&x=%zz", code: "UNSUPPORTED"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/v2/team/app/manifests/1.0", "/v2/team/app/tags/list"} {
				status, code, body := get(t, e.proxy.URL+path+"?"+tc.query, nil)
				if status != http.StatusBadRequest || code != tc.code {
					t.Fatalf("%s: status %d code %q body %.300s", path, status, code, body)
				}
			}
		})
	}
	if n := asked.Load(); n != 0 {
		t.Fatalf("the default upstream was asked %d times", n)
	}
	// The limit is Go's; up to it, ns still routes.
	status, _, body := get(t, e.proxy.URL+"/v2/team/app/manifests/1.0?"+strings.Repeat("x=1&", 9_000)+"ns=up.test", nil)
	if status != http.StatusOK {
		t.Fatalf("9,001 parameters: %d %.300s", status, body)
	}
}

// An internal failure (here: the state database is gone when a blob's
// repository link must be checked) reaches the client as "internal error"
// and a request id; the cause is in the log line that carries the same id.
// It used to send the Go error text. (A tag lookup no longer fails on a
// missing state: the tag is asked upstream, as when Redis is away.)
func TestInternalErrorShowsRequestIDNotCause(t *testing.T) {
	var logs harness.LogBuffer
	e := newEnv(t, withLog(&logs), withRequiredBlobLinks())
	img, _ := random.Image(256, 1)
	e.push(t, "team/app:1.0", img)
	ls, _ := img.Layers()
	layer, _ := ls[0].Digest()
	if err := e.state.Close(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(e.proxy.URL + "/v2/team/app/blobs/" + layer.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := resp.Header.Get(proxy.RequestIDHeader)
	if len(id) != 16 {
		t.Fatalf("request id header %q", id)
	}
	want := `{"errors":[{"code":"UNKNOWN","message":"internal error, request id ` + id + `"}]}`
	if resp.StatusCode != http.StatusInternalServerError || string(body) != want {
		t.Fatalf("status %d body %s\nwant %s", resp.StatusCode, body, want)
	}
	var line struct {
		RequestID string `json:"request_id"`
		Status    int
		Failure   struct{ Error, Cause string }
	}
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, `"msg":"request"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line.RequestID != id || line.Status != 500 || !strings.Contains(line.Failure.Cause, "look up blob") || !strings.Contains(line.Failure.Cause, "database not open") {
		t.Fatalf("request log line %+v lacks the id or the cause; logs:\n%s", line, logs.String())
	}
	// Every response carries an id, successes included, each its own.
	ok, err := http.Get(e.proxy.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	ok.Body.Close()
	if other := ok.Header.Get(proxy.RequestIDHeader); len(other) != 16 || other == id {
		t.Fatalf("second request id %q (first %q)", other, id)
	}
}
