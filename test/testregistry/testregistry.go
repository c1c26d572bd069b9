// Package testregistry starts real OCI registries on loopback for tests.
//
// Each Registry is go-containerregistry's pkg/registry with blobs kept on
// disk (so 1 GiB layers never sit in the test's memory), the referrers API
// on, optional Docker-Hub-like bearer token auth served from a separate
// listener, request accounting, and fault injection (stop/restart, corrupt
// or slow blobs, scripted error responses). Nothing listens beyond
// 127.0.0.1.
package testregistry

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Option configures Start.
type Option func(*config)

type config struct {
	tokenAuth bool
	username  string
	password  string
	tokenTTL  time.Duration
	referrers bool
}

// WithTokenAuth makes the registry demand bearer tokens from a separate token
// server, the way Docker Hub sends clients to auth.docker.io. With a non-empty
// username the token server requires those basic credentials, so anonymous
// pulls are refused; with an empty username anyone gets a token.
func WithTokenAuth(username, password string) Option {
	return func(c *config) {
		c.tokenAuth = true
		c.username = username
		c.password = password
	}
}

// WithTokenTTL sets how long issued tokens stay valid (default 300s). The
// registry enforces d exactly; expires_in reports it rounded up to seconds.
func WithTokenTTL(d time.Duration) Option {
	return func(c *config) { c.tokenTTL = d }
}

// WithReferrers turns the OCI 1.1 referrers endpoint on (default) or off.
// Off, GET /v2/<name>/referrers/<digest> answers 404 like registries that
// predate the API, so clients must fall back to the sha256-<hex> tag schema.
func WithReferrers(enabled bool) Option {
	return func(c *config) { c.referrers = enabled }
}

// Registry is a running test registry. All methods are safe for concurrent
// use.
type Registry struct {
	t     testing.TB
	cfg   config
	addr  string // kept across Stop/Restart so clients find it again
	blobs *blobStore
	token *tokenServer // nil without token auth
	reg   http.Handler
	log   *log.Logger

	inflight atomic.Int64

	mu       sync.Mutex
	srv      *http.Server // nil while stopped
	requests []request
	conns    int
	failures []*failure
}

type request struct {
	method string
	path   string
}

type failure struct {
	path       *regexp.Regexp
	status     int
	left       int // < 0: forever
	retryAfter string
}

// Start runs a registry on 127.0.0.1 with an OS-chosen port. It is stopped,
// and its storage removed, when the test ends.
func Start(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	cfg := config{tokenTTL: 300 * time.Second, referrers: true}
	for _, o := range opts {
		o(&cfg)
	}
	blobs, err := newBlobStore(t.TempDir())
	if err != nil {
		t.Fatalf("testregistry: %v", err)
	}
	// Never registry.Logger(nil): ggcr dereferences it on the first request.
	// A t.Log sink would panic when a handler outlives the test, so discard.
	logger := log.New(io.Discard, "", 0)
	r := &Registry{
		t:     t,
		cfg:   cfg,
		blobs: blobs,
		log:   logger,
		reg: registry.New(
			registry.Logger(logger),
			registry.WithBlobHandler(blobs),
			registry.WithReferrersSupport(cfg.referrers),
		),
	}
	if cfg.tokenAuth {
		r.token, err = startTokenServer(cfg, logger)
		if err != nil {
			t.Fatalf("testregistry: %v", err)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		if r.token != nil {
			r.token.close()
		}
		t.Fatalf("testregistry: listen: %v", err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(func() {
		r.Stop()
		if r.token != nil {
			r.token.close()
		}
	})
	return r
}

// Host returns "127.0.0.1:PORT", the form image references use.
func (r *Registry) Host() string { return r.addr }

// URL returns "http://127.0.0.1:PORT".
func (r *Registry) URL() string { return "http://" + r.addr }

func (r *Registry) serve(ln net.Listener) {
	srv := &http.Server{
		Handler:           http.HandlerFunc(r.serveHTTP),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          r.log,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				r.mu.Lock()
				r.conns++
				r.mu.Unlock()
			}
		},
	}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go srv.Serve(ln) //nolint:errcheck // ErrServerClosed after Stop is the normal end.
}

// Stop closes the listener and every open connection, including ones in the
// middle of a download, so clients see resets and then connection refused.
// Content, tokens and counters are kept for Restart.
func (r *Registry) Stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Close()
	// Handlers still running on closed connections finish quickly (their
	// writes fail, slow blobs watch the request context); wait so a test
	// that asserts right after Stop sees settled counters and files.
	deadline := time.Now().Add(10 * time.Second)
	for r.inflight.Load() > 0 {
		if time.Now().After(deadline) {
			r.t.Errorf("testregistry: %d handlers still running 10s after Stop", r.inflight.Load())
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Restart serves the same content on the same port again. It is a no-op
// while running. Call it from the test goroutine: it fails the test if the
// port cannot be bound again within 5s.
func (r *Registry) Restart() {
	r.mu.Lock()
	running := r.srv != nil
	r.mu.Unlock()
	if running {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", r.addr)
		if err == nil {
			r.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("testregistry: rebind %s: %v", r.addr, err)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Count returns how many requests the registry listener received (whatever
// the answer, 401s and injected failures included) whose method equals method
// ("" for any) and whose URL path matches pathRegexp (unanchored, as
// regexp.MatchString). An invalid pattern panics: it is a bug in the test.
func (r *Registry) Count(method, pathRegexp string) int {
	re := regexp.MustCompile(pathRegexp)
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, q := range r.requests {
		if (method == "" || q.method == method) && re.MatchString(q.path) {
			n++
		}
	}
	return n
}

// TokenRequests returns how many requests the token server received.
func (r *Registry) TokenRequests() int {
	if r.token == nil {
		return 0
	}
	return r.token.count()
}

// Connections returns how many TCP connections the registry listener has
// accepted, across restarts.
func (r *Registry) Connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns
}

// ResetCounts zeroes Count, TokenRequests and Connections, typically after
// seeding so a test only sees the traffic it causes.
func (r *Registry) ResetCounts() {
	r.mu.Lock()
	r.requests = nil
	r.conns = 0
	r.mu.Unlock()
	if r.token != nil {
		r.token.resetCount()
	}
}

// CorruptBlob makes every later GET of d answer the right status, length and
// Docker-Content-Digest but with bytes in the middle inverted, so only a
// client that verifies the digest notices.
func (r *Registry) CorruptBlob(d v1.Hash) { r.blobs.setCorrupt(d) }

// SetBlobDelay makes GETs of d pause perMiB after each MiB sent, long enough
// for a test to kill a client mid-download. A pause ends early when the
// client goes away or the registry stops. Zero removes the delay.
func (r *Registry) SetBlobDelay(d v1.Hash, perMiB time.Duration) { r.blobs.setDelay(d, perMiB) }

// Fail makes the next `times` requests whose path matches pathRegexp answer
// status with an OCI error body (TOOMANYREQUESTS for 429, UNKNOWN otherwise)
// and a Retry-After header when retryAfter is non-empty. A negative times
// fails them all from now on. Rules apply after authentication, so a request
// answered 401 does not use one up; the first matching rule with failures
// left wins.
func (r *Registry) Fail(pathRegexp string, status int, times int, retryAfter string) {
	re := regexp.MustCompile(pathRegexp)
	if times == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, &failure{path: re, status: status, left: times, retryAfter: retryAfter})
}

func (r *Registry) serveHTTP(w http.ResponseWriter, req *http.Request) {
	r.inflight.Add(1)
	defer r.inflight.Add(-1)

	r.mu.Lock()
	r.requests = append(r.requests, request{method: req.Method, path: req.URL.Path})
	r.mu.Unlock()

	if r.token != nil && !r.token.authorize(w, req) {
		return
	}
	if f, ok := r.takeFailure(req.URL.Path); ok {
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		code := "UNKNOWN"
		if f.status == http.StatusTooManyRequests {
			code = "TOOMANYREQUESTS"
		}
		writeError(w, f.status, code, fmt.Sprintf("testregistry: injected %d", f.status))
		return
	}
	if r.cfg.referrers && (req.Method == http.MethodGet || req.Method == http.MethodHead) && strings.Contains(req.URL.Path, "/referrers/") {
		r.serveReferrers(w, req)
		return
	}
	r.reg.ServeHTTP(w, req)
}

func (r *Registry) takeFailure(path string) (failure, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.failures {
		if f.left == 0 || !f.path.MatchString(path) {
			continue
		}
		if f.left > 0 {
			f.left--
		}
		return *f, true
	}
	return failure{}, false
}

// writeError answers with the distribution spec's error body so clients parse
// it like a real registry's:
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes
func writeError(w http.ResponseWriter, status int, code, message string) {
	body, _ := json.Marshal(map[string]any{
		"errors": []map[string]string{{"code": code, "message": message}},
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	w.WriteHeader(status)
	w.Write(body) //nolint:errcheck // the client may be gone; nothing to do.
}
