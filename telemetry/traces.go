package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// The standard OpenTelemetry variables that switch trace export on. The
// OTLP/HTTP exporter reads them (and OTEL_EXPORTER_OTLP_HEADERS,
// OTEL_EXPORTER_OTLP_TIMEOUT, … and their _TRACES_ forms) itself.
const (
	envEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envSDKDisabled    = "OTEL_SDK_DISABLED"
	envTracesExporter = "OTEL_TRACES_EXPORTER"
	envProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
)

// serviceName is the resource's service.name unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES says otherwise.
const serviceName = "portcullis"

// TracingEnabled reports whether the environment asks for traces: an OTLP
// endpoint (general or for traces) is set, and neither OTEL_SDK_DISABLED=true
// nor OTEL_TRACES_EXPORTER=none turns them off. Without it Portcullis makes
// no spans at all.
func TracingEnabled(getenv func(string) string) bool {
	if strings.TrimSpace(getenv(envEndpoint)) == "" && strings.TrimSpace(getenv(envTracesEndpoint)) == "" {
		return false
	}
	if strings.EqualFold(strings.TrimSpace(getenv(envSDKDisabled)), "true") {
		return false
	}
	return !strings.EqualFold(strings.TrimSpace(getenv(envTracesExporter)), "none")
}

// Tracing hands out tracers: the SDK's, exporting over OTLP/HTTP through a
// batch span processor, when the environment asks for traces; else no-op
// tracers that record nothing. It sets no global OpenTelemetry state.
type Tracing struct {
	provider *sdktrace.TracerProvider // nil when off
	noop     trace.TracerProvider
}

// NewTracing builds tracing from the standard OTEL_* variables. Off (see
// TracingEnabled) it costs nothing and Tracer returns no-op tracers.
func NewTracing(ctx context.Context, log *slog.Logger) (*Tracing, error) {
	return newTracing(ctx, log, os.Getenv)
}

func newTracing(ctx context.Context, log *slog.Logger, getenv func(string) string) (*Tracing, error) {
	t := &Tracing{noop: noop.NewTracerProvider()}
	if !TracingEnabled(getenv) {
		return t, nil
	}
	// Only OTLP over HTTP (protobuf) is built in; a collector expecting
	// gRPC would see garbage, so say so rather than export nothing quietly.
	for _, k := range []string{envTracesProtocol, envProtocol} {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			if v != "http/protobuf" {
				return nil, fmt.Errorf("traces: %s=%q is not supported: Portcullis exports OTLP over HTTP (http/protobuf)", k, v)
			}
			break
		}
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("traces: OTLP/HTTP exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", serviceName)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
	)
	if err != nil {
		// A malformed OTEL_RESOURCE_ATTRIBUTES still leaves a usable
		// resource; say what was wrong and go on.
		log.Warn("traces: resource attributes", "err", err)
	}
	t.provider = sdktrace.NewTracerProvider(
		// Batch options and the sampler come from OTEL_BSP_* and
		// OTEL_TRACES_SAMPLER; the default sampler follows a sampled
		// parent (traceparent) and samples every root.
		sdktrace.WithBatcher(&loggingExporter{SpanExporter: exp, log: log, every: time.Minute}),
		sdktrace.WithResource(res),
	)
	log.Info("traces exported over OTLP/HTTP", "endpoint", firstNonEmpty(getenv(envTracesEndpoint), getenv(envEndpoint)))
	return t, nil
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t != nil && t.provider != nil }

// Tracer returns the named tracer; a no-op one when tracing is off (or t is
// nil).
func (t *Tracing) Tracer(name string) trace.Tracer {
	if !t.Enabled() {
		return noop.NewTracerProvider().Tracer(name)
	}
	return t.provider.Tracer(name)
}

// Shutdown exports the spans still queued and stops the exporter; ctx
// bounds how long that may take.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("traces: flush and stop exporter: %w", err)
	}
	return nil
}

// TracerEnabled reports whether tr records spans: false for nil and for the
// no-op tracer, so callers on hot paths can skip building attributes and
// contexts when tracing is off.
func TracerEnabled(tr trace.Tracer) bool {
	if tr == nil {
		return false
	}
	_, off := tr.(noop.Tracer)
	return !off
}

// Recording returns tr when it records spans, else nil, so a caller keeps
// nil and skips every span, context and attribute when tracing is off.
func Recording(tr trace.Tracer) trace.Tracer {
	if !TracerEnabled(tr) {
		return nil
	}
	return tr
}

// EndOnClose wraps rc so that span ends, with the bytes read under
// bytesKey, when rc is closed (once, however often Close is called).
func EndOnClose(rc io.ReadCloser, span trace.Span, bytesKey attribute.Key) io.ReadCloser {
	return &spanCloser{ReadCloser: rc, span: span, key: bytesKey}
}

type spanCloser struct {
	io.ReadCloser
	span trace.Span
	key  attribute.Key
	n    int64
	once sync.Once
}

func (r *spanCloser) Read(b []byte) (int, error) {
	n, err := r.ReadCloser.Read(b)
	r.n += int64(n)
	return n, err
}

func (r *spanCloser) Close() error {
	err := r.ReadCloser.Close()
	r.once.Do(func() {
		r.span.SetAttributes(r.key.Int64(r.n))
		r.span.End()
	})
	return err
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// loggingExporter reports export failures in Portcullis' own log, at most
// one line per interval (a collector that is down fails every batch), and
// keeps them from the SDK's global error handler, which would print to
// stderr outside the JSON log.
type loggingExporter struct {
	sdktrace.SpanExporter
	log   *slog.Logger
	every time.Duration

	mu       sync.Mutex
	last     time.Time
	failures int // since the last line
}

func (e *loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	e.mu.Lock()
	e.failures++
	now := time.Now()
	if !e.last.IsZero() && now.Sub(e.last) < e.every {
		e.mu.Unlock()
		return nil
	}
	n := e.failures
	e.last, e.failures = now, 0
	e.mu.Unlock()
	e.log.Warn("traces: export failed; spans dropped", "failed_batches", n, "spans", len(spans), "err", err)
	return nil
}
