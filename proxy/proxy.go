// Package proxy serves the pull side of the OCI distribution API in front of
// several upstream registries, from a verified content cache.
package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"

	"github.com/portcullis/portcullis/proxy/cache"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/telemetry"
)

// Upstream is one configured registry as the proxy uses it.
type Upstream struct {
	Client *upstream.Client
	// TagTTL is how long a tag → digest resolution is trusted before it is
	// revalidated upstream; 0 means DefaultTagTTL, and a negative value
	// (RevalidateTags) means every tag request is revalidated.
	TagTTL time.Duration
}

// DefaultTagTTL is the tag trust of an upstream that sets none.
const DefaultTagTTL = 5 * time.Minute

// RevalidateTags as an Upstream.TagTTL trusts no tag resolution: each
// request by tag asks the upstream (configuration tag_ttl: 0).
const RevalidateTags time.Duration = -1

// tagFresh reports whether a tag resolution checked age ago may be used
// without asking the upstream.
func (u Upstream) tagFresh(age time.Duration) bool {
	return u.TagTTL > 0 && age >= 0 && age < u.TagTTL
}

// Options wires a Proxy.
type Options struct {
	Upstreams       []Upstream
	DefaultUpstream string // name of the upstream for requests that name none
	Cache           *cache.Store
	Fetcher         *cache.Fetcher
	State           store.Store
	Gate            Gate // nil allows everything
	Logger          *slog.Logger
	// ManifestTimeout bounds upstream work for one manifest, tag or
	// referrers request; 0 means 60 s.
	ManifestTimeout time.Duration
	// GateBlobs refuses blobs of blocked images when the gate is a BlobGate.
	GateBlobs bool
	// PublicURL is the base of links in messages (no trailing slash);
	// empty: the address each client used.
	PublicURL string
	// Local is content Portcullis publishes itself (verdicts, SBOMs),
	// served by digest and listed in its subject's referrers. May be nil.
	Local store.ArtifactStore
	// Access decides who may pull what (package proxy/auth); nil allows
	// everyone everything.
	Access Access
	// Leases, when set, make manifest fetches single-flight across the
	// replicas sharing State and Cache; Replica names this one in them.
	Leases  cache.Leases
	Replica string
	// RequireBlobLink serves a cached blob under a repository only when
	// that repository is known to reference it; set when clients
	// authenticate, so the shared cache does not leak one repository's
	// layers to someone allowed only another.
	RequireBlobLink bool
	// Metrics records requests, cache results, bytes served and blocked
	// pulls; nil records nothing.
	Metrics *telemetry.ProxyMetrics
	// BlockedPulls counts each manifest request the gate refuses, by the
	// code of the block's first reason (an in-memory tally the server
	// flushes to the shared counters); nil counts none.
	BlockedPulls interface{ Inc(reason string) }
	// CurationTally counts curation refusals (see SetCuration) for the
	// summaries the server records; nil counts none.
	CurationTally *CurationTally
	// Tracer makes the request spans (README, "Traces"); nil or a no-op
	// tracer makes none.
	Tracer trace.Tracer
}

// Access decides who may pull what. The caller's identity travels in the
// request context (put there by the authenticating middleware).
type Access interface {
	// User names the caller for the request log; never a secret.
	User(ctx context.Context) string
	// Allow is called after routing, before any cache or upstream work,
	// for every request that names a repository (and by Resolve). It
	// returns nil or an *AccessError.
	Allow(ctx context.Context, upstream, repo string) error
}

// AccessError refuses a request: 401 with a challenge when the caller has
// not authenticated (so clients send credentials), else 403.
type AccessError struct {
	Unauthenticated bool
	Challenge       string // WWW-Authenticate value for a 401
	Message         string
}

func (e *AccessError) Error() string { return e.Message }

// ErrAccessDenied is what Resolve wraps when the caller may not read the
// repository.
var ErrAccessDenied = errors.New("access denied")

// WriteError writes an OCI error body, for handlers in front of the proxy
// (authentication) that refuse a /v2/ request before it gets here.
func WriteError(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	errorf(status, code, "%s", message).write(w, r.Method == http.MethodHead)
}

// accessError turns an Access refusal into the error the client sees.
func accessError(err error, w http.ResponseWriter) *regError {
	var ae *AccessError
	if !errors.As(err, &ae) {
		return errInternal("check access", err)
	}
	if ae.Unauthenticated {
		if ae.Challenge != "" {
			w.Header().Set("WWW-Authenticate", ae.Challenge)
		}
		return errorf(http.StatusUnauthorized, "UNAUTHORIZED", "%s", ae.Message)
	}
	return errorf(http.StatusForbidden, "DENIED", "%s", ae.Message)
}

// Proxy is the /v2/ handler.
type Proxy struct {
	upstreams       map[string]Upstream
	router          *router
	cache           *cache.Store
	fetcher         *cache.Fetcher
	state           store.Store
	gate            Gate
	log             *slog.Logger
	manifestTimeout time.Duration
	gateBlobs       bool
	local           store.ArtifactStore
	publicURL       string
	access          Access
	requireBlobLink bool
	leases          cache.Leases
	replica         string
	metrics         *telemetry.ProxyMetrics
	tracer          trace.Tracer // nil: tracing off
	manifestFlight  singleflight.Group
	tags            tagMemo
	accepts         acceptMemo
	links           linkMemo
	now             func() time.Time

	blockedPulls interface{ Inc(reason string) }
	// curation is set after New (SetCuration); nil: none.
	curation      atomic.Pointer[curationHolder]
	curationTally *CurationTally
	// cacheHits and cacheMisses count manifest and blob answers from the
	// cache and from upstream since start (the dashboard's hit ratio).
	cacheHits, cacheMisses atomic.Int64
	// inFlight counts the /v2/ requests being served, so background work
	// (the re-match after a database update) can yield to pulls.
	inFlight atomic.Int64
}

// InFlight is the number of /v2/ requests being served now.
func (p *Proxy) InFlight() int64 { return p.inFlight.Load() }

// New builds the proxy. It does not contact any upstream.
func New(o Options) (*Proxy, error) {
	p := &Proxy{
		upstreams:       map[string]Upstream{},
		cache:           o.Cache,
		fetcher:         o.Fetcher,
		state:           o.State,
		gate:            cmp.Or[Gate](o.Gate, allowAll{}),
		log:             cmp.Or(o.Logger, slog.Default()),
		manifestTimeout: cmp.Or(o.ManifestTimeout, 60*time.Second),
		gateBlobs:       o.GateBlobs,
		local:           o.Local,
		publicURL:       strings.TrimRight(o.PublicURL, "/"),
		access:          o.Access,
		requireBlobLink: o.RequireBlobLink,
		leases:          o.Leases,
		replica:         o.Replica,
		metrics:         o.Metrics,
		blockedPulls:    o.BlockedPulls,
		curationTally:   o.CurationTally,
		tracer:          telemetry.Recording(o.Tracer),
		now:             time.Now,
	}
	var names []string
	for _, u := range o.Upstreams {
		name := u.Client.Name()
		if _, dup := p.upstreams[name]; dup {
			return nil, fmt.Errorf("upstream %s configured twice", name)
		}
		u.TagTTL = cmp.Or(u.TagTTL, DefaultTagTTL)
		p.upstreams[name] = u
		names = append(names, name)
	}
	if o.DefaultUpstream != "" {
		if _, ok := p.upstreams[o.DefaultUpstream]; !ok {
			return nil, fmt.Errorf("default upstream %s is not a configured upstream", o.DefaultUpstream)
		}
	}
	p.router = newRouter(names, o.DefaultUpstream)
	return p, nil
}

// requestInfo collects what the request log reports about one request,
// and the gate that decides it.
type requestInfo struct {
	gate     Gate
	route    telemetry.Route
	upstream string
	repo     string
	cache    string
	abort    bool // the response broke after its headers went out
	// curationWarning is a curation refusal the rule's mode (warn) lets
	// through: the manifest is served with it as a warning.
	curationWarning string
}

// ServeHTTP serves /v2/ with the gate of the options (none: everything
// allowed).
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.serveGated(w, r, p.gate) }

// WithGate serves /v2/ with gate deciding what may be served. The gate (the
// evaluation pipeline) reads images through this same Proxy, so it is given
// here, once both exist, rather than at New.
func (p *Proxy) WithGate(gate Gate) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.serveGated(w, r, gate) })
}

// serveGated routes a /v2/ request, writes any error as an OCI error body,
// and logs the request.
func (p *Proxy) serveGated(w http.ResponseWriter, r *http.Request, gate Gate) {
	p.inFlight.Add(1)
	defer p.inFlight.Add(-1)
	start := time.Now()
	r, span := p.startRequestSpan(r)
	id := NewRequestID()
	w.Header().Set(RequestIDHeader, id)
	lw := &loggingWriter{ResponseWriter: w}
	info := &requestInfo{gate: gate}
	var errAttrs []slog.Attr
	err := p.serve(lw, r, info)
	if err != nil {
		if err.internal {
			err.Message = InternalMessage(id)
		}
		if !lw.wroteHeader {
			err.write(lw, r.Method == http.MethodHead)
		}
		info.cache = cmp.Or(info.cache, "-")
		errAttrs = append(errAttrs, slog.String("error", err.Code+": "+err.Message))
		if err.cause != nil {
			errAttrs = append(errAttrs, slog.String("cause", err.cause.Error()))
		}
	}
	status := cmp.Or(lw.status, http.StatusOK)
	p.metrics.Request(r.Context(), info.route, status, info.cache, lw.bytes)
	p.countCache(info.cache)
	endRequestSpan(span, r, info, status, lw.bytes, err)
	level := slog.LevelInfo
	if lw.status >= 500 {
		level = slog.LevelWarn
	}
	p.log.LogAttrs(r.Context(), level, "request",
		slog.String("request_id", id),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("query", r.URL.RawQuery),
		slog.Int("status", status),
		slog.Int64("bytes", lw.bytes),
		slog.Duration("duration", time.Since(start)),
		slog.String("upstream", info.upstream),
		slog.String("repo", info.repo),
		slog.String("cache", info.cache),
		slog.String("remote", r.RemoteAddr),
		slog.String("user", p.userOf(r.Context())),
		slog.Bool("aborted", info.abort),
		slog.Attr{Key: "failure", Value: slog.GroupValue(errAttrs...)},
		traceLogAttr(span),
	)
	if info.abort {
		panic(http.ErrAbortHandler) // net/http resets the connection, quietly
	}
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, info *requestInfo) *regError {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	rt, rerr := p.router.parse(r.URL)
	info.route = metricsRoute(rt.endpoint)
	if rerr != nil {
		return rerr
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errUnsupported("portcullis is a read-only pull-through mirror: %s is not supported", r.Method)
	}
	info.upstream, info.repo = rt.upstream, rt.repo
	if p.access != nil && rt.repo != "" {
		if err := p.access.Allow(r.Context(), rt.upstream, rt.repo); err != nil {
			return accessError(err, w)
		}
	}
	if rt.repo != "" {
		if rerr := p.curateRoute(r.Context(), rt, info); rerr != nil {
			return rerr
		}
	}
	switch rt.endpoint {
	case endpointBase:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, "{}")
		}
		return nil
	case endpointCatalog:
		return errorf(http.StatusNotFound, "UNSUPPORTED", "listing repositories (_catalog) is not supported by this mirror")
	case endpointUpload:
		return errUnsupported("portcullis is a read-only pull-through mirror: uploads are not supported")
	case endpointManifest:
		return p.serveManifest(w, r, rt, info)
	case endpointBlob:
		return p.serveBlob(w, r, rt, info)
	case endpointTags:
		return p.serveTags(w, r, rt)
	case endpointReferrers:
		return p.serveReferrers(w, r, rt)
	}
	return errorf(http.StatusNotFound, "NAME_UNKNOWN", "unknown endpoint")
}

// metricsRoute is the route label of an endpoint.
func metricsRoute(e endpoint) telemetry.Route {
	switch e {
	case endpointManifest:
		return telemetry.RouteManifest
	case endpointBlob:
		return telemetry.RouteBlob
	case endpointTags:
		return telemetry.RouteTags
	case endpointReferrers:
		return telemetry.RouteReferrers
	}
	return telemetry.RouteOther
}

// loggingWriter records status and size for the request log. It keeps
// io.ReaderFrom so cached blobs still go out with sendfile.
type loggingWriter struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (lw *loggingWriter) WriteHeader(code int) {
	if !lw.wroteHeader {
		lw.status, lw.wroteHeader = code, true
	}
	lw.ResponseWriter.WriteHeader(code)
}

func (lw *loggingWriter) Write(b []byte) (int, error) {
	if !lw.wroteHeader {
		lw.WriteHeader(http.StatusOK)
	}
	n, err := lw.ResponseWriter.Write(b)
	lw.bytes += int64(n)
	return n, err
}

func (lw *loggingWriter) ReadFrom(r io.Reader) (int64, error) {
	if !lw.wroteHeader {
		lw.WriteHeader(http.StatusOK)
	}
	var n int64
	var err error
	if rf, ok := lw.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else { // HTTP/2 has no ReadFrom
		n, err = io.Copy(struct{ io.Writer }{lw.ResponseWriter}, r)
	}
	lw.bytes += n
	return n, err
}

func (lw *loggingWriter) Flush() {
	if f, ok := lw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// userOf names the caller in the request log; empty without Access.
func (p *Proxy) userOf(ctx context.Context) string {
	if p.access == nil {
		return ""
	}
	return p.access.User(ctx)
}

func (p *Proxy) upstreamFor(rt route) Upstream { return p.upstreams[rt.upstream] }

// detach gives upstream work its own deadline; the client's cancellation
// still applies.
func (p *Proxy) detach(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.manifestTimeout)
}

// countCache counts an answer's Portcullis-Cache source as a hit (the
// cache answered: hit, revalidated, stale) or a miss (upstream: miss,
// coalesced); content Portcullis publishes itself and errors are neither.
func (p *Proxy) countCache(source string) {
	switch source {
	case cacheHit, cacheRevalidated, cacheStale:
		p.cacheHits.Add(1)
	case cacheMiss, cache.SourceCoalesced:
		p.cacheMisses.Add(1)
	}
}

// CacheCounts reports the manifest and blob answers served from the cache
// and fetched from upstream since this replica started.
func (p *Proxy) CacheCounts() (hits, misses int64) {
	return p.cacheHits.Load(), p.cacheMisses.Load()
}
