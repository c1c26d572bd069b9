package pipeline

import (
	"context"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"
)

// A job's traceparent comes from the store (Redis, possibly shared): the
// root span links to it only when it is a well-formed W3C traceparent of
// bounded length; anything else starts an unlinked root.
func TestRootSpanLinksOnlyValidTraceParents(t *testing.T) {
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name     string
		queued   string
		wantLink bool
	}{
		{"none", "", false},
		{"valid", valid, true},
		{"malformed", "00-xyz-00f067aa0ba902b7-01", false},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		// A later version may carry more fields: one within the bound
		// is read, one past it is not.
		{"later version", "01" + valid[2:] + "-" + strings.Repeat("x", 16), true},
		{"too long", "01" + valid[2:] + "-" + strings.Repeat("x", maxTraceParent), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			p := New(Options{Tracer: tp.Tracer("test")})
			// A span already in ctx must not become the parent.
			ctx, outer := tp.Tracer("test").Start(context.Background(), "outer")
			_, span := p.startRoot(ctx, spanEvaluate, tt.queued)
			endSpan(span, nil)
			outer.End()
			var got sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.Name() == spanEvaluate {
					got = s
				}
			}
			if got == nil {
				t.Fatal("no evaluate span")
			}
			if got.Parent().IsValid() {
				t.Errorf("root span has parent %s", got.Parent().SpanID())
			}
			if (len(got.Links()) == 1) != tt.wantLink {
				t.Errorf("links %v, want link: %v", got.Links(), tt.wantLink)
			}
			if tt.wantLink && got.Links()[0].SpanContext.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
				t.Errorf("linked to %s", got.Links()[0].SpanContext.TraceID())
			}
		})
	}
}

// The traceparent a job carries is that of the sampled span queuing it,
// and empty without one (tracing off).
func TestTraceParentOfQueuingSpan(t *testing.T) {
	if got := traceParent(context.Background()); got != "" {
		t.Errorf("no span: traceparent %q, want empty", got)
	}
	ctx, span := noop.NewTracerProvider().Tracer("x").Start(context.Background(), "x")
	if got := traceParent(ctx); got != "" {
		t.Errorf("no-op span: traceparent %q, want empty", got)
	}
	span.End()
	tp := sdktrace.NewTracerProvider()
	ctx, span = tp.Tracer("test").Start(context.Background(), "pull")
	defer span.End()
	sc := span.SpanContext()
	want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
	if got := traceParent(ctx); got != want {
		t.Errorf("traceparent %q, want %q", got, want)
	}
	// With tracing off the pipeline makes no spans at all.
	p := New(Options{Tracer: noop.NewTracerProvider().Tracer("x")})
	if _, s := p.startRoot(ctx, spanEvaluate, want); s != nil {
		t.Error("root span with tracing off")
	}
	if _, s := p.startSpan(ctx, spanMatch); s != nil {
		t.Error("child span with tracing off")
	}
}
