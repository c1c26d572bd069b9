package telemetry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/portcullis/portcullis/test/otlpreceiver"
)

// tracesEnvVars are every variable the tests set: each test starts from
// all of them empty, whatever the environment running the tests says.
var tracesEnvVars = []string{
	envEndpoint, envTracesEndpoint, envSDKDisabled, envTracesExporter, envProtocol, envTracesProtocol,
	"OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
}

func clearTracesEnv(t *testing.T) {
	t.Helper()
	for _, k := range tracesEnvVars {
		t.Setenv(k, "")
	}
}

func tracesTestLogger() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewJSONHandler(&buf, nil)), &buf
}

func TestTracingEnabled(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing set", nil, false},
		{"blank endpoint", map[string]string{envEndpoint: "  "}, false},
		{"endpoint", map[string]string{envEndpoint: "http://127.0.0.1:4318"}, true},
		{"traces endpoint", map[string]string{envTracesEndpoint: "http://127.0.0.1:4318/v1/traces"}, true},
		{"sdk disabled", map[string]string{envEndpoint: "http://127.0.0.1:4318", envSDKDisabled: "TRUE"}, false},
		{"sdk disabled false", map[string]string{envEndpoint: "http://127.0.0.1:4318", envSDKDisabled: "false"}, true},
		{"traces exporter none", map[string]string{envEndpoint: "http://127.0.0.1:4318", envTracesExporter: "none"}, false},
		{"traces exporter otlp", map[string]string{envEndpoint: "http://127.0.0.1:4318", envTracesExporter: "otlp"}, true},
		{"only other signals' variables", map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:4318"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := TracingEnabled(func(k string) string { return tt.env[k] })
			if got != tt.want {
				t.Errorf("TracingEnabled(%v) = %v, want %v", tt.env, got, tt.want)
			}
		})
	}
}

// makeSpans records a parent and a child span with tr and returns whether
// they recorded.
func makeSpans(tr trace.Tracer) bool {
	ctx, parent := tr.Start(context.Background(), "parent")
	_, child := tr.Start(ctx, "child")
	rec := parent.IsRecording() || child.IsRecording()
	child.End()
	parent.End()
	return rec
}

// Off — no endpoint, or switched off by the standard variables — tracing
// hands out no-op tracers, and nothing reaches a receiver even when an
// endpoint is named.
func TestTracingOff(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string // RECEIVER is replaced by the receiver's URL
	}{
		{"no endpoint", nil},
		{"sdk disabled", map[string]string{envEndpoint: "RECEIVER", envSDKDisabled: "true"}},
		{"traces exporter none", map[string]string{envEndpoint: "RECEIVER", envTracesExporter: "none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearTracesEnv(t)
			rcv := otlpreceiver.Start(t)
			for k, v := range tt.env {
				t.Setenv(k, strings.ReplaceAll(v, "RECEIVER", rcv.URL))
			}
			log, _ := tracesTestLogger()
			tr, err := NewTracing(context.Background(), log)
			if err != nil {
				t.Fatal(err)
			}
			if tr.Enabled() {
				t.Fatal("tracing enabled")
			}
			tracer := tr.Tracer("test")
			if _, ok := tracer.(noop.Tracer); !ok || TracerEnabled(tracer) {
				t.Errorf("tracer %T, want the no-op tracer", tracer)
			}
			if makeSpans(tracer) {
				t.Error("a span recorded with tracing off")
			}
			if err := tr.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := rcv.Requests(); n != 0 {
				t.Errorf("receiver got %d export requests with tracing off", n)
			}
		})
	}
}

// On, spans go to the endpoint the standard variables name, with the
// resource they describe.
func TestTracingExports(t *testing.T) {
	tests := []struct {
		name        string
		env         map[string]string // RECEIVER as above
		wantService string
	}{
		{"general endpoint", map[string]string{envEndpoint: "RECEIVER"}, "portcullis"},
		{"traces endpoint", map[string]string{envTracesEndpoint: "RECEIVER/v1/traces"}, "portcullis"},
		{"service name from the environment", map[string]string{envEndpoint: "RECEIVER", "OTEL_SERVICE_NAME": "mirror-eu"}, "mirror-eu"},
		{"gzip and headers", map[string]string{envEndpoint: "RECEIVER", "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip", "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=a"}, "portcullis"},
		{"http/protobuf named", map[string]string{envEndpoint: "RECEIVER", envProtocol: "http/protobuf"}, "portcullis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearTracesEnv(t)
			t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "")
			rcv := otlpreceiver.Start(t)
			for k, v := range tt.env {
				t.Setenv(k, strings.ReplaceAll(v, "RECEIVER", rcv.URL))
			}
			log, _ := tracesTestLogger()
			tr, err := NewTracing(context.Background(), log)
			if err != nil {
				t.Fatal(err)
			}
			if !tr.Enabled() || !TracerEnabled(tr.Tracer("test")) {
				t.Fatal("tracing off with an endpoint set")
			}
			if !makeSpans(tr.Tracer("test")) {
				t.Fatal("spans not recording")
			}
			// Shutdown flushes: no waiting for the batch interval.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := tr.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			spans := rcv.Spans()
			byName := map[string]otlpreceiver.Span{}
			for _, s := range spans {
				byName[s.Name] = s
			}
			parent, child := byName["parent"], byName["child"]
			if len(spans) != 2 || parent.SpanID == "" || child.SpanID == "" {
				t.Fatalf("received %s, want parent and child", otlpreceiver.Names(spans))
			}
			if child.ParentSpanID != parent.SpanID || child.TraceID != parent.TraceID || parent.ParentSpanID != "" {
				t.Errorf("child %+v is not under parent %+v", child, parent)
			}
			if parent.Service != tt.wantService {
				t.Errorf("service.name %q, want %q", parent.Service, tt.wantService)
			}
		})
	}
}

// Only OTLP over HTTP is built in: asking for gRPC is a clear start-up
// error, not spans silently lost.
func TestTracingRefusesOtherProtocols(t *testing.T) {
	for _, k := range []string{envProtocol, envTracesProtocol} {
		t.Run(k, func(t *testing.T) {
			clearTracesEnv(t)
			t.Setenv(envEndpoint, "http://127.0.0.1:4318")
			t.Setenv(k, "grpc")
			log, _ := tracesTestLogger()
			_, err := NewTracing(context.Background(), log)
			if err == nil || !strings.Contains(err.Error(), k) {
				t.Fatalf("err %v, want one naming %s", err, k)
			}
		})
	}
}

type failingExporter struct{ calls int }

func (f *failingExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error {
	f.calls++
	return errors.New("collector says no")
}
func (f *failingExporter) Shutdown(context.Context) error { return nil }

// Export failures land in Portcullis' log, not on stderr through the SDK's
// global handler, and a collector that stays down gets one line per
// interval, not one per batch.
func TestExportFailuresLoggedAtAnInterval(t *testing.T) {
	log, buf := tracesTestLogger()
	inner := &failingExporter{}
	e := &loggingExporter{SpanExporter: inner, log: log, every: time.Hour}
	for range 3 {
		if err := e.ExportSpans(context.Background(), nil); err != nil {
			t.Fatalf("ExportSpans returned %v: the SDK would print it again", err)
		}
	}
	if inner.calls != 3 {
		t.Fatalf("exporter called %d times, want 3", inner.calls)
	}
	if n := strings.Count(buf.String(), "traces: export failed"); n != 1 {
		t.Fatalf("%d failure lines within the interval, want 1:\n%s", n, buf)
	}
	e.every = 0
	if err := e.ExportSpans(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"failed_batches":3`) {
		t.Errorf("second line does not count the failures since the first:\n%s", buf)
	}
}

// The exporter's failures reach the log from a real export too.
func TestExportFailureFromReceiverLogged(t *testing.T) {
	clearTracesEnv(t)
	rcv := otlpreceiver.Start(t)
	rcv.FailNext(10)
	t.Setenv(envEndpoint, rcv.URL)
	log, buf := tracesTestLogger()
	tr, err := NewTracing(context.Background(), log)
	if err != nil {
		t.Fatal(err)
	}
	makeSpans(tr.Tracer("test"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if rcv.Requests() == 0 || len(rcv.Spans()) != 0 {
		t.Fatalf("receiver: %d requests, %d spans kept; want a refused export", rcv.Requests(), len(rcv.Spans()))
	}
	if !strings.Contains(buf.String(), "traces: export failed") {
		t.Errorf("no failure in the log:\n%s", buf)
	}
}
