package cache

import (
	"context"
	"errors"

	"github.com/opencontainers/go-digest"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/telemetry"
)

// Span names and attributes (README, "Traces").
const (
	spanLookup = "cache.lookup"
	spanCommit = "cache.commit"

	attrDigest = attribute.Key("portcullis.digest")
	attrResult = attribute.Key("portcullis.cache")
	attrBytes  = attribute.Key("portcullis.bytes")
)

// WithTracer records the blob look-ups and commits as spans, children of
// the request that asked (for a shared download: the one that started it).
// A nil or no-op tracer records nothing.
func WithTracer(t trace.Tracer) FetcherOption {
	return func(f *Fetcher) {
		f.tracer = telemetry.Recording(t)
	}
}

// lookup opens d from the store, in a cache.lookup span when tracing.
func (f *Fetcher) lookup(ctx context.Context, d digest.Digest) (*Blob, error) {
	if f.tracer == nil {
		return f.store.Open(ctx, d)
	}
	ctx, span := f.tracer.Start(ctx, spanLookup, trace.WithAttributes(attrDigest.String(d.String())))
	defer span.End()
	b, err := f.store.Open(ctx, d)
	switch {
	case err == nil:
		span.SetAttributes(attrResult.String(SourceHit))
	case errors.Is(err, ErrNotFound):
		span.SetAttributes(attrResult.String(SourceMiss))
	default:
		span.SetStatus(codes.Error, err.Error())
	}
	return b, err
}

// downloadContext is the context a download runs under: none of the
// request's cancellation (the download is shared and outlives it), but its
// span as parent, so the upstream fetch and the commit show in the trace
// of the request that started the download.
func (f *Fetcher) downloadContext(requestCtx context.Context) context.Context {
	if f.tracer == nil {
		return context.Background()
	}
	return trace.ContextWithSpanContext(context.Background(), trace.SpanContextFromContext(requestCtx))
}

// commit moves a verified download into the store, in a cache.commit span
// when tracing.
func (f *Fetcher) commit(ctx context.Context, in *ingest, d digest.Digest) error {
	if f.tracer == nil {
		return in.commit(ctx, d)
	}
	ctx, span := f.tracer.Start(ctx, spanCommit, trace.WithAttributes(attrDigest.String(d.String()), attrBytes.Int64(in.n)))
	defer span.End()
	err := in.commit(ctx, d)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}
