package telemetry

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Route is what a request asked for, as portcullis_requests_total labels it.
type Route uint8

// Routes. Everything that is not one of the pull API's named endpoints or
// the status API is RouteOther (the /v2/ base, health checks, /metrics,
// unknown paths).
const (
	RouteOther Route = iota
	RouteManifest
	RouteBlob
	RouteTags
	RouteReferrers
	RouteAPI
	numRoutes
)

func (r Route) String() string {
	switch r {
	case RouteManifest:
		return "manifest"
	case RouteBlob:
		return "blob"
	case RouteTags:
		return "tags"
	case RouteReferrers:
		return "referrers"
	case RouteAPI:
		return "api"
	}
	return "other"
}

// Values of the result label of portcullis_cache_requests_total: the
// proxy's Portcullis-Cache header values.
var cacheResults = []string{"hit", "miss", "coalesced", "revalidated", "stale", "local"}

// Status codes are labelled as they are; one attribute set per route and
// code is built on first use and kept (at most numRoutes × 500).
const (
	minStatus = 100
	maxStatus = 599
)

// ProxyMetrics records what the pull side serves. A nil *ProxyMetrics
// records nothing.
type ProxyMetrics struct {
	requests      metric.Int64Counter
	requestOpts   [numRoutes][maxStatus - minStatus + 2]atomic.Pointer[[]metric.AddOption]
	cacheRequests metric.Int64Counter
	cacheOpts     map[string][]metric.AddOption // read-only after construction
	bytesServed   metric.Int64Counter
	fromCache     []metric.AddOption
	fromUpstream  []metric.AddOption
	blocked       metric.Int64Counter
	reasons       boundedLabels
}

// NewProxyMetrics creates the request, cache, bytes and blocked-pull
// instruments on m (nil: a meter that records nothing).
func NewProxyMetrics(m metric.Meter) (*ProxyMetrics, error) {
	m = meterOrNoop(m)
	pm := &ProxyMetrics{cacheOpts: map[string][]metric.AddOption{}, reasons: boundedLabels{keys: []string{"reason"}, max: maxReasons, other: "OTHER"}}
	var err, e error
	pm.requests, e = m.Int64Counter("portcullis_requests_total",
		metric.WithDescription("HTTP requests answered, by route and status code."), metric.WithUnit("{request}"))
	err = firstErr(err, e)
	pm.cacheRequests, e = m.Int64Counter("portcullis_cache_requests_total",
		metric.WithDescription("Manifest and blob requests by where their content came from (the Portcullis-Cache header)."), metric.WithUnit("{request}"))
	err = firstErr(err, e)
	pm.bytesServed, e = m.Int64Counter("portcullis_bytes_served_total",
		metric.WithDescription("Response body bytes of manifests and blobs served, by source: cache or upstream (a download in progress)."), metric.WithUnit("By"))
	err = firstErr(err, e)
	pm.blocked, e = m.Int64Counter("portcullis_blocked_pulls_total",
		metric.WithDescription("Manifest requests refused by the policy gate, by the code of the block's first reason."), metric.WithUnit("{request}"))
	err = firstErr(err, e)
	if err != nil {
		return nil, err
	}
	for _, r := range cacheResults {
		pm.cacheOpts[r] = addOpts(attribute.String("result", r))
	}
	pm.fromCache = addOpts(attribute.String("source", "cache"))
	pm.fromUpstream = addOpts(attribute.String("source", "upstream"))
	// Every series of a fixed label set exists from the start, at 0, so a
	// rate over it has a beginning.
	ctx := context.Background()
	for _, r := range cacheResults {
		pm.cacheRequests.Add(ctx, 0, pm.cacheOpts[r]...)
	}
	pm.bytesServed.Add(ctx, 0, pm.fromCache...)
	pm.bytesServed.Add(ctx, 0, pm.fromUpstream...)
	return pm, nil
}

// Request records one answered request: its route and status, and for
// manifests and blobs where the content came from (cache, one of the
// Portcullis-Cache values, "" or anything else when none) and how many body
// bytes went out (counted for successful answers only).
func (pm *ProxyMetrics) Request(ctx context.Context, route Route, status int, cache string, bytes int64) {
	if pm == nil {
		return
	}
	pm.requests.Add(ctx, 1, pm.requestOptions(route, status)...)
	opts, ok := pm.cacheOpts[cache]
	if !ok {
		return
	}
	pm.cacheRequests.Add(ctx, 1, opts...)
	if bytes > 0 && status < 300 { // content, not an error body
		source := pm.fromCache
		if cache == "miss" || cache == "coalesced" {
			source = pm.fromUpstream
		}
		pm.bytesServed.Add(ctx, bytes, source...)
	}
}

// requestOptions is the attribute set of route and status, built once.
func (pm *ProxyMetrics) requestOptions(route Route, status int) []metric.AddOption {
	if route >= numRoutes {
		route = RouteOther
	}
	slot := status - minStatus
	if status < minStatus || status > maxStatus {
		slot = maxStatus - minStatus + 1
	}
	p := &pm.requestOpts[route][slot]
	if opts := p.Load(); opts != nil {
		return *opts
	}
	code := "unknown"
	if slot <= maxStatus-minStatus {
		code = strconv.Itoa(status)
	}
	opts := addOpts(attribute.String("route", route.String()), attribute.String("code", code))
	p.Store(&opts)
	return opts
}

// Blocked records a manifest request the gate refused; reason is the code
// of the block's first reason (a policy reason code such as VULNERABLE).
func (pm *ProxyMetrics) Blocked(ctx context.Context, reason string) {
	if pm == nil {
		return
	}
	if reason == "" {
		reason = "UNKNOWN"
	}
	pm.blocked.Add(ctx, 1, pm.reasons.options(reason)...)
}

// CountRequests counts the requests h answers under route, for handlers
// outside the pull API (the status API, health checks, /metrics). pm nil:
// h itself.
func (pm *ProxyMetrics) CountRequests(route Route, h http.Handler) http.Handler {
	if pm == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() { pm.requests.Add(r.Context(), 1, pm.requestOptions(route, sw.code())...) }()
		h.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status a handler answered. Flush and Unwrap
// keep event streams (http.ResponseController) working through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps net/http's sendfile path for a file served through it:
// without it io.Copy would fall back to Write and copy every byte.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
}

func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// maxReasons bounds the distinct reason labels; policy reason codes are a
// short fixed list, so more means something unexpected.
const maxReasons = 64

// boundedLabels keeps one attribute set per combination of values of its
// labels, for at most max combinations; later ones share the set whose
// values are all other.
type boundedLabels struct {
	keys  []string
	max   int
	other string

	mu   sync.Mutex
	sets map[string][]metric.AddOption
}

func (b *boundedLabels) options(values ...string) []metric.AddOption {
	key := strings.Join(values, "\x00")
	b.mu.Lock()
	defer b.mu.Unlock()
	if opts, ok := b.sets[key]; ok {
		return opts
	}
	if b.sets == nil {
		b.sets = map[string][]metric.AddOption{}
	}
	if len(b.sets) >= b.max {
		values = slices.Repeat([]string{b.other}, len(b.keys))
		key = strings.Join(values, "\x00")
		if opts, ok := b.sets[key]; ok {
			return opts
		}
	}
	kvs := make([]attribute.KeyValue, len(b.keys))
	for i, k := range b.keys {
		kvs[i] = attribute.String(k, values[i])
	}
	opts := addOpts(kvs...)
	b.sets[key] = opts
	return opts
}

// addOpts is the measurement option of a fixed attribute set, built once
// so recording allocates nothing.
func addOpts(kv ...attribute.KeyValue) []metric.AddOption {
	return []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(kv...))}
}

func firstErr(err, e error) error {
	if err != nil {
		return err
	}
	return e
}
