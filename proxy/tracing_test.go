package proxy_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/portcullis/portcullis/proxy"
)

// requestLogLine serves one request with a proxy that has no upstream and
// returns its JSON request log line.
func requestLogLine(t *testing.T, tracer trace.Tracer, path string, header http.Header) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	p, err := proxy.New(proxy.Options{Logger: slog.New(slog.NewJSONHandler(&buf, nil)), Tracer: tracer})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for k, vs := range header {
		req.Header[k] = vs
	}
	p.ServeHTTP(httptest.NewRecorder(), req)
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &line); err != nil {
		t.Fatalf("request log %q: %v", buf.String(), err)
	}
	return line
}

// With tracing on, the request span is a server span named for its route,
// the child of the client's traceparent, and its ids are in the request
// log line; off (nil or the no-op tracer), the line has no trace fields.
func TestRequestSpanAndLogLine(t *testing.T) {
	const (
		clientTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
		clientParent = "00f067aa0ba902b7"
	)
	tests := []struct {
		name        string
		traceparent string
		path        string
		wantName    string
		wantTrace   string // "" : a new trace
		wantParent  string
	}{
		{"new trace", "", "/v2/", "GET other", "", ""},
		{"client traceparent", "00-" + clientTrace + "-" + clientParent + "-01", "/v2/", "GET other", clientTrace, clientParent},
		{"malformed traceparent is ignored", "00-zz-" + clientParent + "-01", "/v2/", "GET other", "", ""},
		{"unknown route", "", "/v2/_catalog", "GET other", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			h := http.Header{}
			if tt.traceparent != "" {
				h.Set("Traceparent", tt.traceparent)
			}
			line := requestLogLine(t, tp.Tracer("test"), tt.path, h)
			spans := rec.Ended()
			if len(spans) != 1 {
				t.Fatalf("%d spans, want 1", len(spans))
			}
			s := spans[0]
			if s.Name() != tt.wantName || s.SpanKind() != trace.SpanKindServer {
				t.Errorf("span %q (%v), want %q (server)", s.Name(), s.SpanKind(), tt.wantName)
			}
			sc := s.SpanContext()
			if tt.wantTrace != "" && sc.TraceID().String() != tt.wantTrace {
				t.Errorf("trace id %s, want the client's %s", sc.TraceID(), tt.wantTrace)
			}
			if got := s.Parent().SpanID(); tt.wantParent != "" && got.String() != tt.wantParent {
				t.Errorf("parent %s, want the client's span %s", got, tt.wantParent)
			}
			if tt.wantParent == "" && s.Parent().IsValid() {
				t.Errorf("span has parent %s, want a root", s.Parent().SpanID())
			}
			if line["trace_id"] != sc.TraceID().String() || line["span_id"] != sc.SpanID().String() {
				t.Errorf("log line trace_id %v span_id %v, want %s %s", line["trace_id"], line["span_id"], sc.TraceID(), sc.SpanID())
			}
		})
	}
	for name, tracer := range map[string]trace.Tracer{"nil tracer": nil, "no-op tracer": noop.NewTracerProvider().Tracer("x")} {
		t.Run(name, func(t *testing.T) {
			h := http.Header{"Traceparent": {"00-" + clientTrace + "-" + clientParent + "-01"}}
			line := requestLogLine(t, tracer, "/v2/", h)
			for _, k := range []string{"trace_id", "span_id"} {
				if v, ok := line[k]; ok {
					t.Errorf("log line has %s=%v with tracing off", k, v)
				}
			}
			if line["request_id"] == nil {
				t.Errorf("not a request log line: %v", line)
			}
		})
	}
}
