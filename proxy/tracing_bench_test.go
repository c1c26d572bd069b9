package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/proxy"
)

type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkRequestSpan is the per-request cost of the request span and its
// log fields: GET /v2/ (no I/O) with tracing off, and on with a batch
// processor whose exporter drops the spans.
func BenchmarkRequestSpan(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	for _, tc := range []struct {
		name   string
		tracer trace.Tracer
	}{{"off", nil}, {"on", tp.Tracer("bench")}} {
		b.Run(tc.name, func(b *testing.B) {
			p, err := proxy.New(proxy.Options{Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Tracer: tc.tracer})
			if err != nil {
				b.Fatal(err)
			}
			req := httptest.NewRequest(http.MethodGet, "/v2/", nil)
			b.ReportAllocs()
			for b.Loop() {
				p.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
