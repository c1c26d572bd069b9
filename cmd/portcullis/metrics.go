package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/telemetry"
)

// serverMetrics is what the server records metrics with. With
// telemetry.metrics off every field is nil, and a nil instrument records
// nothing.
type serverMetrics struct {
	tel      *telemetry.Telemetry
	proxy    *telemetry.ProxyMetrics
	cache    *telemetry.CacheMetrics
	pipeline *telemetry.PipelineMetrics
}

func newServerMetrics(ctx context.Context, cfg config.Config, log *slog.Logger) (*serverMetrics, error) {
	m := &serverMetrics{}
	if !cfg.Telemetry.Metrics {
		return m, nil
	}
	tel, err := telemetry.New(ctx, telemetry.Options{ServiceVersion: version(), Logger: log})
	if err != nil {
		return nil, err
	}
	m.tel = tel
	if m.proxy, err = telemetry.NewProxyMetrics(tel.Meter()); err != nil {
		return nil, err
	}
	if m.cache, err = telemetry.NewCacheMetrics(tel.Meter()); err != nil {
		return nil, err
	}
	if m.pipeline, err = telemetry.NewPipelineMetrics(tel.Meter()); err != nil {
		return nil, err
	}
	return m, nil
}

// meter is what other parts build instruments from; nil when metrics are
// off.
func (m *serverMetrics) meter() metric.Meter {
	if m.tel == nil {
		return nil
	}
	return m.tel.Meter()
}

// upstream gives the instruments of one configured upstream.
func (m *serverMetrics) upstream(name string) (*telemetry.UpstreamMetrics, error) {
	if m.tel == nil {
		return nil, nil
	}
	return telemetry.NewUpstreamMetrics(m.tel.Meter(), name)
}

// observe registers the gauges read at each collection: the cache size,
// the scan queue's length (a Redis call with a shared store, so only
// then) and the vulnerability database.
func (m *serverMetrics) observe(cacheBytes func() int64, queue store.Queue, db *vulndb.Shared) error {
	if m.tel == nil {
		return nil
	}
	meter := m.tel.Meter()
	if err := telemetry.ObserveCacheSize(meter, cacheBytes); err != nil {
		return err
	}
	if err := telemetry.ObserveQueueDepth(meter, queue.Len); err != nil {
		return err
	}
	return telemetry.ObserveVulnDB(meter, func(ctx context.Context) (telemetry.VulnDBStatus, error) {
		st, err := db.Status(ctx)
		return telemetry.VulnDBStatus{Records: int64(st.Records), BuiltAt: st.BuiltAt}, err
	}, time.Now)
}

// observeClamdSkipped registers the count of files not sent to clamd.
func (m *serverMetrics) observeClamdSkipped(skipped func() int64) error {
	if m.tel == nil {
		return nil
	}
	return telemetry.ObserveClamdSkipped(m.tel.Meter(), skipped)
}

// handler serves GET /metrics; nil when metrics are off. It is mounted on
// the pull listener; a separate API listener (api.listen) mounts it there.
func (m *serverMetrics) handler() http.Handler {
	if m.tel == nil {
		return nil
	}
	return m.tel.Handler()
}

// countRequests counts what next answers outside the pull API (the status
// API, health checks, /metrics) in portcullis_requests_total. /v2/ goes
// straight through: the proxy counts it in its request log, without a
// second wrapper on the blob path.
func (m *serverMetrics) countRequests(next http.Handler) http.Handler {
	if m.proxy == nil {
		return next
	}
	api := m.proxy.CountRequests(telemetry.RouteAPI, next)
	other := m.proxy.CountRequests(telemetry.RouteOther, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/v2" || strings.HasPrefix(p, "/v2/"):
			next.ServeHTTP(w, r)
		case strings.HasPrefix(p, "/api/"):
			api.ServeHTTP(w, r)
		default:
			other.ServeHTTP(w, r)
		}
	})
}

// shutdown flushes what OTLP has not sent yet.
func (m *serverMetrics) shutdown(log *slog.Logger) {
	if m.tel == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.tel.Shutdown(ctx); err != nil {
		log.Warn("flush metrics", "err", err)
	}
}
