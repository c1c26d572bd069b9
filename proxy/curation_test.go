package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
)

// policyCuration answers the proxy's curation check with a parsed policy
// (the pipeline's adapter, tested there, words messages and modes).
type policyCuration struct{ pol *policy.Policy }

func (c policyCuration) Curate(_ context.Context, upstream, repo, reference string) *proxy.Refusal {
	d, refused := c.pol.Curate(upstream, repo, reference)
	if !refused || d.Effective == policy.Allow {
		return nil
	}
	return &proxy.Refusal{Rule: d.Rule, Code: d.Reasons[0].Code, Message: "portcullis: " + upstream + "/" + repo + ": " + d.Reasons[0].Message,
		Warn: d.Effective == policy.Warn}
}

func mustPolicy(t *testing.T, src string) *policy.Policy {
	t.Helper()
	pol, err := policy.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

const curationTestPolicy = `rules:
  - name: allowlist
    match: {}
    source: block
    reason: only approved repositories
  - name: approved
    match: {upstreams: [up.test], repositories: [approved/*]}
    reason: use a release
    tags: {block: [latest, "*-rc*"]}
  - name: pinned
    match: {upstreams: [up.test], repositories: [pinned/*]}
    tags: {require_digest: true}
  - name: trial
    mode: warn
    match: {upstreams: [up.test], repositories: [trial/*]}
    tags: {block: [edge]}
`

// upstreamCounter counts every request the test upstream receives.
func upstreamCounter(e *env) *atomic.Int64 {
	var n atomic.Int64
	e.onUpstream = func(*http.Request) { n.Add(1) }
	return &n
}

type ociErrors struct {
	Errors []struct{ Code, Message string } `json:"errors"`
}

// fetch requests url from the proxy and returns the status and, for an
// error, its first OCI error.
func fetch(t *testing.T, method, url string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 400 || method == http.MethodHead {
		return resp.StatusCode, "", ""
	}
	var oe ociErrors
	if err := json.Unmarshal(body, &oe); err != nil || len(oe.Errors) == 0 {
		t.Fatalf("%s %s: %d with body %q", method, url, resp.StatusCode, body)
	}
	return resp.StatusCode, oe.Errors[0].Code, oe.Errors[0].Message
}

// TestCurationRefusesBeforeUpstreamAndCache: a source the policy refuses
// is answered 403 DENIED naming the rule and its reason for every
// endpoint and every way of naming the upstream, without one request to
// the upstream, even for content already cached through an approved
// repository.
func TestCurationRefusesBeforeUpstreamAndCache(t *testing.T) {
	tally := &reasonTally{counts: map[string]int{}}
	refusals := proxy.NewCurationTally(0)
	e := newEnv(t, func(c *envConfig) { c.blockedPulls, c.curationTally = tally, refusals })
	img, err := random.Image(128, 1)
	if err != nil {
		t.Fatal(err)
	}
	dgst := e.push(t, "approved/app:1.0", img)
	e.push(t, "blocked/app:1.0", img)
	layers, _ := img.Layers()
	layer, _ := layers[0].Digest()
	// Warm the cache through the approved repository.
	for _, path := range []string{"/v2/approved/app/manifests/" + dgst.String(), "/v2/approved/app/blobs/" + layer.String()} {
		if code, _, msg := fetch(t, http.MethodGet, e.proxy.URL+path); code != http.StatusOK {
			t.Fatalf("warm %s: %d %s", path, code, msg)
		}
	}
	e.p.SetCuration(policyCuration{mustPolicy(t, curationTestPolicy)})
	requests := upstreamCounter(e)

	forms := map[string]func(rest string) string{
		"default upstream": func(rest string) string { return "/v2/blocked/app/" + rest },
		"path prefix":      func(rest string) string { return "/v2/up.test/blocked/app/" + rest },
		"ns":               func(rest string) string { return "/v2/blocked/app/" + rest + "?ns=up.test" },
	}
	for form, path := range forms {
		for _, rest := range []string{
			"manifests/1.0", "manifests/" + dgst.String(), "tags/list",
			"blobs/" + layer.String(), "referrers/" + dgst.String(),
		} {
			url := e.proxy.URL + path(rest)
			code, errCode, msg := fetch(t, http.MethodGet, url)
			want := `portcullis: up.test/blocked/app: not an approved source (rule "allowlist": only approved repositories)`
			if code != http.StatusForbidden || errCode != "DENIED" || msg != want {
				t.Errorf("%s GET %s: %d %s %q, want 403 DENIED %q", form, rest, code, errCode, msg, want)
			}
			if code, _, _ := fetch(t, http.MethodHead, url); code != http.StatusForbidden {
				t.Errorf("%s HEAD %s: %d, want 403", form, rest, code)
			}
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("refused requests reached the upstream %d times", n)
	}
	// Each refused manifest request is a blocked pull (3 forms × 2
	// references × GET and HEAD); blobs, tags and referrers are not.
	tally.mu.Lock()
	if got := tally.counts[policy.CodeSourceBlocked]; got != 12 {
		t.Errorf("blocked pulls counted %d, want 12 (%v)", got, tally.counts)
	}
	tally.mu.Unlock()
	// The approved repository still pulls.
	if code, _, msg := fetch(t, http.MethodGet, e.proxy.URL+"/v2/approved/app/manifests/"+dgst.String()); code != http.StatusOK {
		t.Errorf("approved digest: %d %s", code, msg)
	}
	// Resolve (admission, CI) refuses the same way, without the upstream.
	before := requests.Load()
	_, err = e.p.Resolve(context.Background(), "up.test/blocked/app:1.0")
	var ref *proxy.Refusal
	if !errors.Is(err, proxy.ErrAccessDenied) || !errors.As(err, &ref) || ref.Code != policy.CodeSourceBlocked || !strings.Contains(err.Error(), `rule "allowlist": only approved repositories`) {
		t.Errorf("Resolve of a blocked source: %v", err)
	}
	if requests.Load() != before {
		t.Error("Resolve of a blocked source asked the upstream")
	}
	// Every refusal is in the tally, under its rule, source and code:
	// 3 forms × 5 endpoints × GET and HEAD, and the Resolve.
	counts := refusals.Take()
	if len(counts) != 1 || counts[0] != (proxy.CurationCount{Rule: "allowlist", Source: "up.test/blocked/app", Code: policy.CodeSourceBlocked, Count: 31}) {
		t.Errorf("refusals tallied %+v", counts)
	}
	// Without curation the same request is served (the check is what
	// refused, not something else).
	e.p.SetCuration(nil)
	if code, _, msg := fetch(t, http.MethodGet, e.proxy.URL+"/v2/blocked/app/manifests/1.0"); code != http.StatusOK {
		t.Errorf("without curation: %d %s", code, msg)
	}
}

// TestCurationTagRules: blocked tag patterns and require_digest refuse by
// tag before the upstream; digests, including an index's children, stay
// pullable.
func TestCurationTagRules(t *testing.T) {
	e := newEnv(t)
	img, _ := random.Image(64, 1)
	for _, tag := range []string{"latest", "2.0-rc1", "2.0"} {
		e.push(t, "approved/app:"+tag, img)
	}
	idx, err := random.Index(64, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	idxDigest := e.pushIndex(t, "pinned/app:1.0", idx)
	e.p.SetCuration(policyCuration{mustPolicy(t, curationTestPolicy)})
	requests := upstreamCounter(e)
	for _, c := range []struct {
		path, code, msg string
	}{
		{"/v2/approved/app/manifests/latest", "DENIED", `portcullis: up.test/approved/app: tag "latest" is blocked (rule "approved" blocks tags latest, *-rc*: use a release)`},
		{"/v2/up.test/approved/app/manifests/2.0-rc1", "DENIED", ""},
		{"/v2/approved/app/manifests/2.0-rc1?ns=up.test", "DENIED", ""},
		{"/v2/pinned/app/manifests/1.0", "DENIED", `portcullis: up.test/pinned/app: pull by tag "1.0" refused: pull by digest (@sha256:…) (rule "pinned" requires a digest)`},
		{"/v2/up.test/pinned/app/manifests/1.0", "DENIED", ""},
	} {
		code, errCode, msg := fetch(t, http.MethodGet, e.proxy.URL+c.path)
		if code != http.StatusForbidden || errCode != c.code || c.msg != "" && msg != c.msg {
			t.Errorf("%s: %d %s %q, want 403 %s %q", c.path, code, errCode, msg, c.code, c.msg)
		}
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("refused tags reached the upstream %d times", n)
	}
	// Allowed: another tag, the index by digest, and each child by digest.
	paths := []string{"/v2/approved/app/manifests/2.0", "/v2/pinned/app/manifests/" + idxDigest.String()}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range im.Manifests {
		paths = append(paths, "/v2/up.test/pinned/app/manifests/"+m.Digest.String())
	}
	for _, p := range paths {
		if code, _, msg := fetch(t, http.MethodGet, e.proxy.URL+p); code != http.StatusOK {
			t.Errorf("%s: %d %s, want 200", p, code, msg)
		}
	}
	// Under warn mode a blocked tag is served, with the refusal as its
	// warning.
	e.push(t, "trial/app:edge", img)
	resp, err := http.Get(e.proxy.URL + "/v2/trial/app/manifests/edge")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Portcullis-Verdict") != "warn" ||
		!strings.Contains(resp.Header.Get("Portcullis-Reason"), `tag "edge" is blocked (rule "trial" blocks tags edge)`) {
		t.Errorf("warn mode blocked tag: %d %v", resp.StatusCode, resp.Header)
	}
	if _, err := e.p.Resolve(context.Background(), "up.test/trial/app:edge"); err != nil {
		t.Errorf("Resolve of a tag warn mode lets through: %v", err)
	}
	if _, err := e.p.Resolve(context.Background(), "up.test/pinned/app:1.0"); !errors.Is(err, proxy.ErrAccessDenied) {
		t.Errorf("Resolve by tag under require_digest: %v", err)
	}
	if r, err := e.p.Resolve(context.Background(), "up.test/pinned/app@"+idxDigest.String()); err != nil || r.Digest.String() != idxDigest.String() {
		t.Errorf("Resolve by digest under require_digest: %+v %v", r, err)
	}
}

func (e *env) pushIndex(t testing.TB, ref string, idx v1.ImageIndex) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(e.upstreamHost + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCurationTally(t *testing.T) {
	tl := proxy.NewCurationTally(2)
	tl.Add("allowlist", "docker.io/library/nginx", policy.CodeSourceBlocked)
	tl.Add("allowlist", "docker.io/library/nginx", policy.CodeSourceBlocked)
	tl.Add("ours", "ghcr.io/acme/api", policy.CodeTagBlocked)
	for i := range 5 {
		tl.Add("allowlist", fmt.Sprintf("docker.io/x/y%d", i), policy.CodeSourceBlocked)
	}
	got := map[proxy.CurationCount]int64{}
	for _, c := range tl.Take() {
		n := c.Count
		c.Count = 0
		got[c] = n
	}
	want := map[proxy.CurationCount]int64{
		{Rule: "allowlist", Source: "docker.io/library/nginx", Code: policy.CodeSourceBlocked}: 2,
		{Rule: "ours", Source: "ghcr.io/acme/api", Code: policy.CodeTagBlocked}:                1,
		{Rule: proxy.CurationOther, Source: proxy.CurationOther, Code: proxy.CurationOther}:    5,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	if rest := tl.Take(); len(rest) != 0 {
		t.Errorf("Take did not start again: %v", rest)
	}
	// Run flushes what is left when it stops (shutdown).
	tl.Add("allowlist", "docker.io/library/nginx", policy.CodeSourceBlocked)
	ctx, cancel := context.WithCancel(context.Background())
	flushed := make(chan []proxy.CurationCount, 1)
	done := make(chan struct{})
	go func() {
		tl.Run(ctx, time.Hour, func(fctx context.Context, c []proxy.CurationCount) {
			if fctx.Err() != nil {
				t.Error("final flush got a cancelled context")
			}
			flushed <- c
		})
		close(done)
	}()
	cancel()
	select {
	case c := <-flushed:
		if len(c) != 1 || c[0].Count != 1 {
			t.Errorf("final flush %v", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no flush at shutdown")
	}
	<-done
}
