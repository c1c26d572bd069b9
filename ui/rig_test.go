package ui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

func testDigest(i int) string { return fmt.Sprintf("sha256:%064x", i+1) }

// The images the rig stores, each decided in one repository.
var (
	digestAllowed = testDigest(1)
	digestWarned  = testDigest(2)
	digestBlocked = testDigest(3)
	digestPending = testDigest(4)
	digestHostile = testDigest(5)
	digestLong    = testDigest(6)
)

const (
	hostileRepo    = `evil/<script>alert("repo")</script>`
	hostileTag     = `"><img src=x onerror=alert('tag')>`
	hostileID      = "javascript:alert"
	hostileSummary = `<script>alert("advisory")</script> see javascript:alert(1) and "quotes" & 'apostrophes'`
)

// longName is a 10 KB repository name no page may show whole.
var longName = "long/" + strings.Repeat("x", 10<<10)

const testPolicy = `
rules:
  - name: apps
    match: {repositories: ["library/*"]}
    mode: enforce
    vulnerabilities: {block: CRITICAL, warn: HIGH}
  - name: signed-only
    match: {upstreams: ["ghcr.io"]}
    signature: {required: true, keys: [/dev/null]}
    vulnerabilities: {block: CRITICAL}
`

// rig is a dashboard over a real bbolt store filled through the store API.
type rig struct {
	st     *store.Bolt
	api    *api.Handler
	pl     *pipeline.Pipeline
	queue  *recordingQueue
	events *testEvents
	ui     *Handler
	srv    *httptest.Server
	now    time.Time
	mu     sync.Mutex
}

// tokens: the read and admin tokens of rigs built withTokens.
const (
	readToken  = "read-secret-token"
	adminToken = "admin-secret-token"
)

func newRig(t *testing.T, withTokens bool) *rig {
	t.Helper()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	fill(t, st)
	pol, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := &rig{st: st, queue: &recordingQueue{}, events: &testEvents{subs: map[chan pipeline.Event]bool{}}, now: time.Now()}
	r.pl = pipeline.New(pipeline.Options{Store: st, Policy: pol, Logger: log, Matcher: builtNow{}})
	closing := make(chan struct{})
	t.Cleanup(func() { close(closing) })
	r.api = &api.Handler{Scans: st, Resolver: testResolver{}, Queue: r.queue, Events: r.events, Closing: closing, Logger: log}
	o := Options{API: r.api, Policy: r.pl, Logger: log, Signing: true, PublicURL: "https://mirror.example",
		Now: func() time.Time { r.mu.Lock(); defer r.mu.Unlock(); return r.now }}
	if withTokens {
		o.Tokens = loadTokens(t)
	}
	if r.ui, err = New(o); err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(r.ui)
	t.Cleanup(r.srv.Close)
	return r
}

func (r *rig) advance(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.now = r.now.Add(d)
}

func loadTokens(t *testing.T) *api.Tokens {
	t.Helper()
	hash := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	body := hash(readToken) + ": {name: reader, scopes: [read]}\n" + hash(adminToken) + ": {name: boss, scopes: [read, admin]}\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	tk, err := api.LoadTokens(path)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// fill stores an allowed (signed), a warned, a blocked, a pending image and
// two hostile ones, the way the pipeline writes them.
func fill(t *testing.T, st *store.Bolt) {
	t.Helper()
	ctx := context.Background()
	created := time.Now().Add(-72 * time.Hour)
	layer := "sha256:" + strings.Repeat("1a", 32)
	inv := &scanner.Inventory{Packages: []scanner.Package{{Name: "openssl", Version: "3.0.1", Ecosystem: "Alpine:v3.18", Layer: layer}}}
	high := vulndb.Finding{ID: "CVE-2024-1111", Aliases: []string{"GHSA-aaaa-bbbb-cccc"}, Summary: "openssl reads past a buffer", Ecosystem: "Alpine:v3.18",
		Package: "openssl", InstalledVersion: "3.0.1", FixedVersions: []string{"3.0.9"}, Severity: vulndb.SeverityHigh}
	critical := vulndb.Finding{ID: "CVE-2024-2222", Summary: "remote code execution", Ecosystem: "Alpine:v3.18",
		Package: "openssl", InstalledVersion: "3.0.1", FixedVersions: []string{"3.1.0"}, Severity: vulndb.SeverityCritical}
	hostile := vulndb.Finding{ID: hostileID, Summary: hostileSummary, Package: `pkg"<b>`, InstalledVersion: "1<2", Severity: vulndb.SeverityHigh}
	type image struct {
		digest, upstream, repo, tag string
		findings                    []vulndb.Finding
		verdict                     policy.Verdict
		reasons                     []policy.Reason
		signature                   *policy.SignatureFacts
		pending                     bool
	}
	images := []image{
		{digestAllowed, "docker.io", "library/app", "1.0", []vulndb.Finding{}, policy.Allow, nil,
			&policy.SignatureFacts{State: policy.SignatureVerified, Signers: []policy.Signer{{KeyID: "SHA256:signer-key"}}}, false},
		{digestWarned, "docker.io", "library/web", "2.1", []vulndb.Finding{high}, policy.Warn,
			[]policy.Reason{{Code: policy.CodeVulnerable, Verdict: policy.Warn, Message: "1 HIGH vulnerability (CVE-2024-1111 in openssl 3.0.1, fixed in 3.0.9)"}}, nil, false},
		{digestBlocked, "ghcr.io", "org/api", "3.0", []vulndb.Finding{critical, high}, policy.Block,
			[]policy.Reason{
				{Code: policy.CodeUnsigned, Verdict: policy.Block, Message: "no signature by a trusted key"},
				{Code: policy.CodeVulnerable, Verdict: policy.Block, Message: "1 CRITICAL vulnerability (CVE-2024-2222 in openssl 3.0.1)"}},
			&policy.SignatureFacts{State: policy.SignatureUnsigned}, false},
		{digestPending, "quay.io", "team/tool", "latest", nil, "", nil, nil, true},
		{digestHostile, "docker.io", hostileRepo, hostileTag, []vulndb.Finding{hostile}, policy.Warn,
			[]policy.Reason{{Code: policy.CodeVulnerable, Verdict: policy.Warn, Message: `<script>alert("reason")</script>`}}, nil, false},
		{digestLong, "docker.io", longName, strings.Repeat("t", 10<<10), []vulndb.Finding{}, policy.Allow, nil, nil, false},
	}
	for _, img := range images {
		rec := store.ScanRecord{Digest: img.digest, State: store.ScanDone, Upstream: img.upstream, Repository: img.repo,
			ScannerVersion: scanner.Version, DBVersion: "sha256:db@2026-11-27T08:00:00Z", QueuedAt: created, UpdatedAt: created,
			Inventory: inv, Findings: img.findings,
			Facts: &store.ImageFacts{Created: created, CompressedSize: 3 << 20, LayerCount: 2, Platform: "linux/arm64/v8", ManifestMediaType: string(types.OCIManifestSchema1)}}
		if img.pending {
			rec = store.ScanRecord{Digest: img.digest, State: store.ScanPending, Upstream: img.upstream, Repository: img.repo, QueuedAt: created}
		}
		if err := st.PutScan(ctx, &rec); err != nil {
			t.Fatal(err)
		}
		dec := store.DecisionRecord{Digest: img.digest, Upstream: img.upstream, Repository: img.repo, Tag: img.tag, Tags: []string{img.tag, "stable"}, UpdatedAt: created}
		if !img.pending {
			rule := "apps"
			if img.upstream == "ghcr.io" {
				rule = "signed-only"
			}
			dec.Rule, dec.Verdict, dec.Signature = rule, string(img.verdict), img.signature
			dec.Decision = &policy.Decision{Verdict: img.verdict, Effective: img.verdict, Reasons: img.reasons, Mode: policy.ModeEnforce, Rule: rule}
			codes := []string{}
			for _, r := range img.reasons {
				codes = append(codes, r.Code)
			}
			dec.History = []store.VerdictChange{{At: created, To: string(img.verdict), Reasons: codes}}
		}
		if err := st.PutDecision(ctx, &dec); err != nil {
			t.Fatal(err)
		}
	}
}

// testResolver resolves the references of the rig's images, and nothing
// else (404 like an upstream without it).
type testResolver struct{}

type notFoundError struct{ ref string }

func (e notFoundError) Error() string   { return "manifest unknown: " + e.ref }
func (e notFoundError) HTTPStatus() int { return http.StatusNotFound }

func (testResolver) Resolve(_ context.Context, ref string) (proxy.Resolved, error) {
	known := map[string][3]string{
		"docker.io/library/app:1.0": {"docker.io", "library/app", digestAllowed},
		"docker.io/library/web:2.1": {"docker.io", "library/web", digestWarned},
		"ghcr.io/org/api:3.0":       {"ghcr.io", "org/api", digestBlocked},
		"ghcr.io/org/api:new":       {"ghcr.io", "org/api", testDigest(99)}, // in the upstream, never pulled
	}
	if strings.ContainsAny(ref, " <>\"") {
		return proxy.Resolved{}, fmt.Errorf("%w: %q", proxy.ErrBadReference, ref)
	}
	img, ok := known[ref]
	if !ok {
		return proxy.Resolved{}, notFoundError{ref}
	}
	return proxy.Resolved{Upstream: img[0], Repository: img[1], Digest: digest.Digest(img[2]), MediaType: string(types.OCIManifestSchema1)}, nil
}

func (testResolver) IndexChildren(context.Context, string, string, digest.Digest) ([]v1.Descriptor, error) {
	return nil, errors.New("no index here")
}

// recordingQueue records the scans asked for.
type recordingQueue struct {
	mu    sync.Mutex
	asked []string
}

func (q *recordingQueue) Request(_ context.Context, upstream, repo string, d digest.Digest, _ string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.asked = append(q.asked, upstream+"/"+repo+"@"+d.String())
	return nil
}

func (q *recordingQueue) requests() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.asked...)
}

// testEvents fans events out to subscribers, like the pipeline.
type testEvents struct {
	mu   sync.Mutex
	subs map[chan pipeline.Event]bool
}

func (e *testEvents) Subscribe() (<-chan pipeline.Event, func()) {
	c := make(chan pipeline.Event, 16)
	e.mu.Lock()
	e.subs[c] = true
	e.mu.Unlock()
	return c, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		delete(e.subs, c)
	}
}

func (e *testEvents) publish(ev pipeline.Event) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	for c := range e.subs {
		c <- ev
	}
	return len(e.subs)
}

// builtNow is an imported vulnerability database (its version says it was
// built now); what-if must never match anything again.
type builtNow struct{}

func (builtNow) Version() string { return "sha256:db@" + time.Now().UTC().Format(time.RFC3339) }

func (builtNow) MatchVersioned(context.Context, []vulndb.Query) ([]vulndb.Finding, string, error) {
	return nil, "", errors.New("the dashboard matched packages instead of reading stored findings")
}

// client is a browser without redirects followed, so 303s can be checked.
func (r *rig) client() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
}

type response struct {
	status int
	header http.Header
	body   string
}

// do sends a request with the given cookies and header (name: value).
func (r *rig) do(t *testing.T, method, path string, form url.Values, cookies []*http.Cookie, header ...string) response {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, r.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := r.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(raw)}
}

func (r *rig) get(t *testing.T, path string, cookies ...*http.Cookie) response {
	t.Helper()
	return r.do(t, http.MethodGet, path, nil, cookies)
}
