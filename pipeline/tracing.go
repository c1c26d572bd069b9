package pipeline

import (
	"context"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/telemetry"
)

// Span names and attributes of the evaluation path (README, "Traces").
const (
	spanEvaluate  = "evaluate"
	spanDecide    = "decide"
	spanImageRead = "image.read"
	spanLayerRead = "layer.read"
	spanExtract   = "scan.extract"
	spanMatch     = "vuln.match"
	spanVerify    = "signature.verify"
	spanPolicy    = "policy.evaluate"
	spanPublish   = "publish"

	attrUpstream   = attribute.Key("portcullis.upstream")
	attrRepository = attribute.Key("portcullis.repository")
	attrDigest     = attribute.Key("portcullis.digest")
	attrAttempt    = attribute.Key("portcullis.attempt")
	attrBytes      = attribute.Key("portcullis.bytes")
	attrLayer      = attribute.Key("portcullis.layer")
	attrVerdict    = attribute.Key("portcullis.verdict")
	attrRule       = attribute.Key("portcullis.rule")
	attrPackages   = attribute.Key("portcullis.packages")
	attrFindings   = attribute.Key("portcullis.findings")
	attrSignature  = attribute.Key("portcullis.signature")
)

// maxTraceParent bounds the traceparent a queued job carries (55 bytes in
// W3C trace context version 00); anything longer is ignored.
const maxTraceParent = 128

// traceParent is the W3C traceparent of the span in ctx (the pull that
// queues a job), carried in the job so its evaluation links to it; "" when
// there is none.
func traceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsSampled() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// startRoot starts the root span of background work (an evaluation, a
// publication): a trace of its own, linked to the request that queued it
// when the job says which (queued is a traceparent, possibly "").
func (p *Pipeline) startRoot(ctx context.Context, name, queued string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if p.tracer == nil {
		return ctx, nil
	}
	var from trace.SpanContext
	if queued != "" && len(queued) <= maxTraceParent {
		linked := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": queued})
		from = trace.SpanContextFromContext(linked)
	}
	return p.startRootLinked(ctx, name, from, attrs...)
}

// startRootLinked is startRoot with the queuing span given as a span
// context (invalid: no link).
func (p *Pipeline) startRootLinked(ctx context.Context, name string, from trace.SpanContext, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if p.tracer == nil {
		return ctx, nil
	}
	opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithAttributes(attrs...)}
	if from.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: from}))
	}
	return p.tracer.Start(ctx, name, opts...)
}

// startSpan starts a child span of the one in ctx; nil when tracing is off.
func (p *Pipeline) startSpan(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	if p.tracer == nil {
		return ctx, nil
	}
	return p.tracer.Start(ctx, name, trace.WithAttributes(attrs...))
}

// endSpan ends span (nil: tracing off), marking it failed on err.
func endSpan(span trace.Span, err error, attrs ...attribute.KeyValue) {
	if span == nil {
		return
	}
	if len(attrs) > 0 {
		span.SetAttributes(attrs...)
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// tracedImage makes every layer read of img a layer.read span under the
// span in ctx (the extraction): go-containerregistry's layers take no
// context, so the parent is fixed when the image is wrapped.
func (p *Pipeline) tracedImage(ctx context.Context, img v1.Image) v1.Image {
	if p.tracer == nil {
		return img
	}
	return &tracedImage{Image: img, ctx: ctx, tracer: p.tracer}
}

type tracedImage struct {
	v1.Image
	ctx    context.Context
	tracer trace.Tracer
}

func (i *tracedImage) Layers() ([]v1.Layer, error) {
	ls, err := i.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for n, l := range ls {
		out[n] = &tracedLayer{Layer: l, index: n, img: i}
	}
	return out, nil
}

type tracedLayer struct {
	v1.Layer
	index int
	img   *tracedImage
}

// Compressed opens the layer in a layer.read span that ends when the
// reader is closed, with the bytes read.
func (l *tracedLayer) Compressed() (io.ReadCloser, error) {
	attrs := []attribute.KeyValue{attrLayer.Int(l.index)}
	if d, err := l.Digest(); err == nil {
		attrs = append(attrs, attrDigest.String(d.String()))
	}
	_, span := l.img.tracer.Start(l.img.ctx, spanLayerRead, trace.WithAttributes(attrs...))
	rc, err := l.Layer.Compressed()
	if err != nil {
		endSpan(span, err)
		return nil, err
	}
	return telemetry.EndOnClose(rc, span, attrBytes), nil
}
