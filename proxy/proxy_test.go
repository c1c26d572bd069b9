package proxy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/opencontainers/go-digest"
	"go.opentelemetry.io/otel/trace"

	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/cache"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/telemetry"
)

// env is an upstream registry and a proxy in front of it, both on loopback.
type env struct {
	upstream   *httptest.Server
	proxy      *httptest.Server
	fetcher    *cache.Fetcher
	gets       atomic.Int64 // upstream blob GETs
	onUpstream func(*http.Request)
	// intercept answers the upstream requests it selects (returns true)
	// in place of the registry: a hostile or partial upstream.
	intercept    func(http.ResponseWriter, *http.Request) bool
	p            *proxy.Proxy
	upstreamHost string
	proxyHost    string
	dataDir      string
	state        *store.Bolt
}

type envOption func(*envConfig)

type envConfig struct {
	tagTTL          time.Duration
	requireBlobLink bool
	log             io.Writer
	wrapState       func(store.Store) store.Store
	blockedPulls    interface{ Inc(string) }
	curationTally   *proxy.CurationTally
	metrics         *telemetry.ProxyMetrics
	tracer          trace.Tracer
	// listener wraps the proxy server's listener (the connections it
	// accepts), nil: as it is.
	listener func(net.Listener) net.Listener
}

func withTagTTL(d time.Duration) envOption { return func(c *envConfig) { c.tagTTL = d } }
func withRequiredBlobLinks() envOption     { return func(c *envConfig) { c.requireBlobLink = true } }
func withLog(w io.Writer) envOption        { return func(c *envConfig) { c.log = w } }

// withStateWrapper hands the proxy wrap(state) instead of the state itself.
func withStateWrapper(wrap func(store.Store) store.Store) envOption {
	return func(c *envConfig) { c.wrapState = wrap }
}
func quietLogger(t testing.TB) *slog.Logger { return slog.New(slog.NewJSONHandler(io.Discard, nil)) }

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	var cfg envConfig
	for _, o := range opts {
		o(&cfg)
	}
	e := &env{dataDir: t.TempDir()}
	reg := ggcr.New(ggcr.WithReferrersSupport(true), ggcr.Logger(nopLog()))
	e.upstream = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			e.gets.Add(1)
		}
		if e.onUpstream != nil {
			e.onUpstream(r)
		}
		if e.intercept != nil && e.intercept(w, r) {
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(e.upstream.Close)
	e.upstreamHost = strings.TrimPrefix(e.upstream.URL, "http://")

	ctx := context.Background()
	content, err := cache.Open(ctx, cache.Config{
		Parameters: map[string]any{"rootdirectory": filepath.Join(e.dataDir, "cache")},
		Logger:     quietLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	state, err := store.OpenBolt(filepath.Join(e.dataDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { state.Close() })
	e.state = state
	logger := quietLogger(t)
	if cfg.log != nil {
		logger = slog.New(slog.NewJSONHandler(cfg.log, nil))
	}
	client, err := upstream.New(upstream.Config{Name: "up.test", URL: e.upstream.URL})
	if err != nil {
		t.Fatal(err)
	}
	var proxyState store.Store = state
	e.fetcher = cache.NewFetcher(content, time.Minute, 10*time.Second, quietLogger(t))
	// A client may have every byte before its download commits: the
	// data directory goes (an earlier cleanup) only once nothing writes
	// to it.
	t.Cleanup(func() {
		for deadline := time.Now().Add(10 * time.Second); e.fetcher.Downloads() > 0; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Error("a download still runs 10 s after the test")
				return
			}
		}
	})
	if cfg.wrapState != nil {
		proxyState = cfg.wrapState(state)
	}
	p, err := proxy.New(proxy.Options{
		Upstreams:       []proxy.Upstream{{Client: client, TagTTL: cfg.tagTTL}},
		DefaultUpstream: "up.test",
		Cache:           content,
		Fetcher:         e.fetcher,
		State:           proxyState,
		Logger:          logger,
		RequireBlobLink: cfg.requireBlobLink,
		BlockedPulls:    cfg.blockedPulls,
		CurationTally:   cfg.curationTally,
		Metrics:         cfg.metrics,
		Tracer:          cfg.tracer,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.p = p
	e.proxy = httptest.NewUnstartedServer(p)
	if cfg.listener != nil {
		e.proxy.Listener = cfg.listener(e.proxy.Listener)
	}
	e.proxy.Start()
	t.Cleanup(e.proxy.Close)
	e.proxyHost = strings.TrimPrefix(e.proxy.URL, "http://")
	return e
}

func (e *env) push(t testing.TB, ref string, img v1.Image) v1.Hash {
	t.Helper()
	r, err := name.ParseReference(e.upstreamHost + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestPullThroughPathPrefixAndDefault(t *testing.T) {
	e := newEnv(t)
	img, err := random.Image(1024, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := e.push(t, "team/app:1.0", img)
	for _, ref := range []string{
		e.proxyHost + "/up.test/team/app:1.0", // path prefix
		e.proxyHost + "/team/app:1.0",         // default upstream
		e.proxyHost + "/team/app@" + want.String(),
	} {
		t.Run(ref, func(t *testing.T) {
			r, err := name.ParseReference(ref)
			if err != nil {
				t.Fatal(err)
			}
			got, err := remote.Image(r)
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(got); err != nil {
				t.Fatalf("image through proxy does not validate: %v", err)
			}
			if d, _ := got.Digest(); d != want {
				t.Fatalf("digest through proxy %s, want %s", d, want)
			}
		})
	}
	if n := e.gets.Load(); n != 4 { // 3 layers + config, each fetched once
		t.Errorf("upstream blob GETs = %d, want 4 (one per blob)", n)
	}
}

func TestAcceptHeaderReachesUpstream(t *testing.T) {
	e := newEnv(t)
	img, _ := random.Image(256, 1)
	e.push(t, "team/app:1.0", img)
	seen := make(chan string, 10)
	e.onUpstream = func(r *http.Request) {
		if strings.Contains(r.URL.Path, "/manifests/") {
			seen <- r.Header.Get("Accept")
		}
	}
	req, _ := http.NewRequest("GET", e.proxy.URL+"/v2/team/app/manifests/1.0", nil)
	req.Header.Add("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	req.Header.Add("Accept", "application/vnd.oci.image.manifest.v1+json;q=0.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := <-seen; got != "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json" {
		t.Fatalf("upstream saw Accept %q", got)
	}
}

func TestConcurrentManifestRequestsFetchOnce(t *testing.T) {
	e := newEnv(t)
	img, _ := random.Image(256, 1)
	want := e.push(t, "team/app:1.0", img)
	var manifestGets atomic.Int64
	e.onUpstream = func(r *http.Request) {
		if r.Method == "GET" && strings.Contains(r.URL.Path, "/manifests/") {
			manifestGets.Add(1)
			time.Sleep(100 * time.Millisecond) // hold the fetch open so requests overlap
		}
	}
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			resp, err := http.Get(e.proxy.URL + "/v2/team/app/manifests/" + want.String())
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("status %d", resp.StatusCode)
			}
		})
	}
	wg.Wait()
	if n := manifestGets.Load(); n != 1 {
		t.Fatalf("upstream manifest GETs = %d, want 1", n)
	}
}

func TestImageReadsThroughTheCache(t *testing.T) {
	e := newEnv(t)
	img, _ := random.Image(4096, 3)
	want := e.push(t, "team/app:1.0", img)
	ctx := context.Background()
	for round := range 2 {
		got, err := e.p.Image(ctx, "up.test", "team/app", digest.Digest(want.String()))
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(got); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	if n := e.gets.Load(); n != 4 {
		t.Fatalf("upstream blob GETs = %d, want 4: the second read must come from the cache", n)
	}
	idx, _ := random.Index(256, 1, 2)
	r, _ := name.ParseReference(e.upstreamHost + "/team/multi:1")
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	d, _ := idx.Digest()
	if _, err := e.p.Image(ctx, "up.test", "team/multi", digest.Digest(d.String())); !errors.Is(err, proxy.ErrNotAnImage) {
		t.Fatalf("index as image: %v", err)
	}
	children, err := e.p.IndexChildren(ctx, "up.test", "team/multi", digest.Digest(d.String()))
	if err != nil || len(children) != 2 {
		t.Fatalf("children: %v %v", children, err)
	}
}

func TestResolve(t *testing.T) {
	e := newEnv(t)
	img, _ := random.Image(256, 1)
	want := e.push(t, "team/app:1.0", img)
	e.push(t, "team/app:latest", img)
	ctx := context.Background()
	for _, ref := range []string{"up.test/team/app:1.0", "team/app:1.0", "team/app", "team/app@" + want.String()} {
		r, err := e.p.Resolve(ctx, ref)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if r.Upstream != "up.test" || r.Repository != "team/app" || r.Digest.String() != want.String() {
			t.Fatalf("%s resolved to %+v", ref, r)
		}
	}
	for _, ref := range []string{"", "evil.example/x:1", "Team/App:1", "team/app:bad tag"} {
		_, err := e.p.Resolve(ctx, ref)
		if !errors.Is(err, proxy.ErrBadReference) {
			t.Errorf("%q: %v, want ErrBadReference", ref, err)
		}
		// Only a registry the mirror does not serve is ErrUnknownRegistry:
		// the admission webhook tells it from a malformed reference.
		if unknown := ref == "evil.example/x:1"; errors.Is(err, proxy.ErrUnknownRegistry) != unknown {
			t.Errorf("%q: %v, ErrUnknownRegistry should be %v", ref, err, unknown)
		}
	}
}
