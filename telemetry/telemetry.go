// Package telemetry builds Portcullis' OpenTelemetry metrics: one
// MeterProvider, read by a Prometheus exporter on its own registry (served
// at /metrics) and, when the standard OTEL_EXPORTER_OTLP_* variables name an
// endpoint, pushed over OTLP/HTTP as well. Nothing here is global: the
// server hands the Meter, or the typed instruments built from it, to each
// package that records something; a nil Meter means no metrics at no cost.
package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	promexporter "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// ScopeName is the instrumentation scope of every Portcullis instrument.
const ScopeName = "github.com/portcullis/portcullis"

// Options configures New.
type Options struct {
	// ServiceVersion goes into the resource (service.version).
	ServiceVersion string
	// Getenv reads the environment; nil means os.Getenv. Only used to
	// decide whether OTLP export is on: the exporter reads its own
	// variables (endpoint, headers, timeout, …) from the process env.
	Getenv func(string) string
	Logger *slog.Logger
}

// Telemetry owns the MeterProvider and its readers.
type Telemetry struct {
	provider *sdkmetric.MeterProvider
	meter    metric.Meter
	handler  http.Handler
	otlp     bool
}

// OTLPEnabled reports whether the environment asks for OTLP metric export:
// one of the standard endpoint variables is set, and metrics are not
// switched off with OTEL_METRICS_EXPORTER=none.
func OTLPEnabled(getenv func(string) string) bool {
	if getenv("OTEL_METRICS_EXPORTER") == "none" {
		return false
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") != ""
}

// New builds the MeterProvider with a Prometheus reader and, when the
// environment names an OTLP endpoint, a periodic OTLP/HTTP reader (its
// interval from OTEL_METRIC_EXPORT_INTERVAL, default 60 s).
func New(ctx context.Context, o Options) (*Telemetry, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	log := cmp.Or(o.Logger, slog.Default())
	registry := promclient.NewRegistry()
	// Names are given whole (portcullis_requests_total, …_seconds), so the
	// exporter must add no suffixes; scope labels and target_info would add
	// series nobody asked for.
	prom, err := promexporter.New(
		promexporter.WithRegisterer(registry),
		promexporter.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithoutSuffixes),
		promexporter.WithoutScopeInfo(),
		promexporter.WithoutTargetInfo(),
	)
	if err != nil {
		return nil, fmt.Errorf("create prometheus exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", "portcullis"),
		attribute.String("service.version", o.ServiceVersion),
	))
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win over the defaults.
	if env, err := resource.New(ctx, resource.WithFromEnv()); err == nil {
		if merged, err := resource.Merge(res, env); err == nil {
			res = merged
		}
	}
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(prom)}
	t := &Telemetry{}
	if OTLPEnabled(getenv) {
		exp, err := otlpmetrichttp.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("create OTLP metric exporter: %w", err)
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp)))
		t.otlp = true
		log.Info("exporting metrics over OTLP/HTTP")
	}
	t.provider = sdkmetric.NewMeterProvider(opts...)
	t.meter = t.provider.Meter(ScopeName)
	t.handler = promhttp.HandlerFor(registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// Scrapes are cheap but each runs every observable callback (the
		// queue length may be a Redis round trip): a few at a time.
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
	return t, nil
}

// Meter is what other packages build their instruments from, e.g. the
// alerts' portcullis_alerts_total.
func (t *Telemetry) Meter() metric.Meter { return t.meter }

// OTLP reports whether metrics are also pushed over OTLP.
func (t *Telemetry) OTLP() bool { return t.otlp }

// Handler serves the Prometheus text exposition for GET /metrics.
func (t *Telemetry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		t.handler.ServeHTTP(w, r)
	})
}

// Shutdown pushes what the OTLP reader has not sent yet and stops the
// readers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if err := t.provider.Shutdown(ctx); err != nil && !errors.Is(err, sdkmetric.ErrReaderShutdown) {
		return fmt.Errorf("shut down telemetry: %w", err)
	}
	return nil
}

// meterOrNoop is m, or a meter whose instruments do nothing.
func meterOrNoop(m metric.Meter) metric.Meter {
	if m == nil {
		return noop.NewMeterProvider().Meter(ScopeName)
	}
	return m
}
