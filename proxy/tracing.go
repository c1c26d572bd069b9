package proxy

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/opencontainers/go-digest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Span names and attributes of the pull path (README, "Traces").
const (
	spanCacheLookup = "cache.lookup"
	spanCacheCommit = "cache.commit"

	attrRoute      = attribute.Key("portcullis.route")
	attrUpstream   = attribute.Key("portcullis.upstream")
	attrRepository = attribute.Key("portcullis.repository")
	attrCache      = attribute.Key("portcullis.cache")
	attrDigest     = attribute.Key("portcullis.digest")
	attrMethod     = attribute.Key("http.request.method")
	attrStatus     = attribute.Key("http.response.status_code")
	attrBodySize   = attribute.Key("http.response.body.size")
)

// startRequestSpan starts the server span of a /v2/ request, as the child
// of the client's W3C traceparent when it sent one. With tracing off it
// returns r and a nil span.
func (p *Proxy) startRequestSpan(r *http.Request) (*http.Request, trace.Span) {
	if p.tracer == nil {
		return r, nil
	}
	ctx := propagation.TraceContext{}.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, span := p.tracer.Start(ctx, r.Method+" request", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attrMethod.String(r.Method)))
	return r.WithContext(ctx), span
}

// endRequestSpan names the request span after its route, records what the
// request log records, and ends it.
func endRequestSpan(span trace.Span, r *http.Request, info *requestInfo, status int, bytes int64, rerr *regError) {
	if span == nil {
		return
	}
	kind := info.route.String()
	span.SetName(r.Method + " " + kind)
	span.SetAttributes(
		attrRoute.String(kind),
		attrUpstream.String(info.upstream),
		attrRepository.String(info.repo),
		attrCache.String(info.cache),
		attrStatus.Int(status),
		attrBodySize.Int64(bytes),
	)
	switch {
	case rerr != nil && status >= 500:
		span.SetStatus(codes.Error, rerr.Code+": "+rerr.Message)
	case info.abort:
		span.SetStatus(codes.Error, "response broken off")
	}
	span.End()
}

// traceLogAttr puts the request span's trace and span ids in the request
// log line (trace_id, span_id); with tracing off it is the empty attribute,
// which log handlers leave out.
func traceLogAttr(span trace.Span) slog.Attr {
	if span == nil {
		return slog.Attr{}
	}
	sc := span.SpanContext()
	if !sc.IsValid() {
		return slog.Attr{}
	}
	// An empty key inlines the group: the fields sit at the top level.
	return slog.Attr{Value: slog.GroupValue(
		slog.String("trace_id", sc.TraceID().String()),
		slog.String("span_id", sc.SpanID().String()),
	)}
}

// cachedManifest reads a manifest from the content cache, in a
// cache.lookup span when tracing.
func (p *Proxy) cachedManifest(ctx context.Context, d digest.Digest) ([]byte, string, error) {
	if p.tracer == nil {
		return p.cache.Manifest(ctx, d)
	}
	ctx, span := p.tracer.Start(ctx, spanCacheLookup, trace.WithAttributes(attrDigest.String(d.String())))
	defer span.End()
	body, mt, err := p.cache.Manifest(ctx, d)
	span.SetAttributes(attrCache.String(lookupResult(err)))
	return body, mt, err
}

func lookupResult(err error) string {
	if err == nil {
		return "hit"
	}
	return "miss"
}

// commitManifest stores a verified manifest in the content cache, in a
// cache.commit span when tracing.
func (p *Proxy) commitManifest(ctx context.Context, d digest.Digest, mediaType string, body []byte) error {
	if p.tracer == nil {
		return p.cache.PutManifest(ctx, d, mediaType, body)
	}
	ctx, span := p.tracer.Start(ctx, spanCacheCommit, trace.WithAttributes(attrDigest.String(d.String())))
	defer span.End()
	err := p.cache.PutManifest(ctx, d, mediaType, body)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}
