package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// noEnv is an environment without OTLP variables.
func noEnv(string) string { return "" }

// scrape GETs /metrics from t's handler and parses the text exposition.
func scrape(t *testing.T, tel *Telemetry) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	tel.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(rec.Body.String()))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, rec.Body)
	}
	return fams
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// find is the metric of fam with exactly these labels, or nil.
func find(fam *dto.MetricFamily, labels map[string]string) *dto.Metric {
	for _, m := range fam.GetMetric() {
		got := labelsOf(m)
		if len(got) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			if got[k] != v {
				match = false
			}
		}
		if match {
			return m
		}
	}
	return nil
}

// TestExposedNames records on every instrument and checks the families come
// out under exactly the names, types and labels the README documents: no
// unit or _total suffix added by the exporter, no scope labels.
func TestExposedNames(t *testing.T) {
	ctx := context.Background()
	tel, err := New(ctx, Options{Getenv: noEnv, ServiceVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(ctx)
	m := tel.Meter()
	pm, err := NewProxyMetrics(m)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := NewCacheMetrics(m)
	if err != nil {
		t.Fatal(err)
	}
	um, err := NewUpstreamMetrics(m, "ghcr.io")
	if err != nil {
		t.Fatal(err)
	}
	plm, err := NewPipelineMetrics(m)
	if err != nil {
		t.Fatal(err)
	}
	built := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return built.Add(90 * time.Second) }
	if err := ObserveCacheSize(m, func() int64 { return 1234 }); err != nil {
		t.Fatal(err)
	}
	if err := ObserveQueueDepth(m, func(context.Context) (int64, error) { return 7, nil }); err != nil {
		t.Fatal(err)
	}
	if err := ObserveVulnDB(m, func(context.Context) (VulnDBStatus, error) { return VulnDBStatus{Records: 42, BuiltAt: built}, nil }, now); err != nil {
		t.Fatal(err)
	}
	if err := ObserveClamdSkipped(m, func() int64 { return 3 }); err != nil {
		t.Fatal(err)
	}

	pm.Request(ctx, RouteBlob, 200, "hit", 100)
	pm.Request(ctx, RouteBlob, 200, "miss", 30)
	pm.Request(ctx, RouteManifest, 403, "-", 50)   // an error: no cache result, no bytes
	pm.Request(ctx, RouteManifest, 403, "hit", 70) // refused after a cache hit: no bytes
	pm.Blocked(ctx, "VULNERABLE")
	cm.DownloadStarted()
	cm.Evicted()
	um.Request(ctx, 200, 20*time.Millisecond)
	um.Request(ctx, 0, time.Second)
	plm.ScanFinished(ctx, true, 2*time.Second)
	plm.ScanFinished(ctx, false, -1)
	plm.Verdict(ctx, "block", "enforce")

	type sample struct {
		labels map[string]string
		value  float64
	}
	tests := []struct {
		name    string
		typ     dto.MetricType
		samples []sample
	}{
		{"portcullis_requests_total", dto.MetricType_COUNTER, []sample{
			{map[string]string{"route": "blob", "code": "200"}, 2},
			{map[string]string{"route": "manifest", "code": "403"}, 2}}},
		{"portcullis_cache_requests_total", dto.MetricType_COUNTER, []sample{
			{map[string]string{"result": "hit"}, 2}, {map[string]string{"result": "miss"}, 1},
			{map[string]string{"result": "coalesced"}, 0}, {map[string]string{"result": "revalidated"}, 0},
			{map[string]string{"result": "stale"}, 0}, {map[string]string{"result": "local"}, 0}}},
		{"portcullis_bytes_served_total", dto.MetricType_COUNTER, []sample{
			{map[string]string{"source": "cache"}, 100}, {map[string]string{"source": "upstream"}, 30}}},
		{"portcullis_upstream_requests_total", dto.MetricType_COUNTER, []sample{
			{map[string]string{"upstream": "ghcr.io", "code": "200"}, 1},
			{map[string]string{"upstream": "ghcr.io", "code": "error"}, 1}}},
		{"portcullis_upstream_request_duration_seconds", dto.MetricType_HISTOGRAM, []sample{
			{map[string]string{"upstream": "ghcr.io"}, 2}}},
		{"portcullis_inflight_downloads", dto.MetricType_GAUGE, []sample{{map[string]string{}, 1}}},
		{"portcullis_cache_size_bytes", dto.MetricType_GAUGE, []sample{{map[string]string{}, 1234}}},
		{"portcullis_cache_evictions_total", dto.MetricType_COUNTER, []sample{{map[string]string{}, 1}}},
		{"portcullis_scan_queue_depth", dto.MetricType_GAUGE, []sample{{map[string]string{}, 7}}},
		{"portcullis_scan_duration_seconds", dto.MetricType_HISTOGRAM, []sample{{map[string]string{}, 1}}},
		{"portcullis_scans_total", dto.MetricType_COUNTER, []sample{
			{map[string]string{"result": "done"}, 1}, {map[string]string{"result": "failed"}, 1}}},
		{"portcullis_verdicts_total", dto.MetricType_COUNTER, []sample{
			{map[string]string{"verdict": "block", "mode": "enforce"}, 1}}},
		{"portcullis_blocked_pulls_total", dto.MetricType_COUNTER, []sample{
			{map[string]string{"reason": "VULNERABLE"}, 1}}},
		{"portcullis_vulndb_age_seconds", dto.MetricType_GAUGE, []sample{{map[string]string{}, 90}}},
		{"portcullis_vulndb_records", dto.MetricType_GAUGE, []sample{{map[string]string{}, 42}}},
		{"portcullis_clamd_skipped_files_total", dto.MetricType_COUNTER, []sample{{map[string]string{}, 3}}},
	}
	fams := scrape(t, tel)
	var want []string
	for _, tc := range tests {
		want = append(want, tc.name)
		t.Run(tc.name, func(t *testing.T) {
			fam := fams[tc.name]
			if fam == nil {
				t.Fatalf("family %s missing; have %v", tc.name, familyNames(fams))
			}
			if fam.GetType() != tc.typ {
				t.Errorf("type %v, want %v", fam.GetType(), tc.typ)
			}
			if len(fam.GetMetric()) != len(tc.samples) {
				t.Errorf("%d series, want %d: %v", len(fam.GetMetric()), len(tc.samples), fam.GetMetric())
			}
			for _, s := range tc.samples {
				m := find(fam, s.labels)
				if m == nil {
					t.Errorf("no series with labels %v in %v", s.labels, fam.GetMetric())
					continue
				}
				var got float64
				switch tc.typ {
				case dto.MetricType_COUNTER:
					got = m.GetCounter().GetValue()
				case dto.MetricType_GAUGE:
					got = m.GetGauge().GetValue()
				case dto.MetricType_HISTOGRAM:
					got = float64(m.GetHistogram().GetSampleCount())
				}
				if got != s.value {
					t.Errorf("%v = %v, want %v", s.labels, got, s.value)
				}
			}
		})
	}
	// Nothing else: no target_info, no otel_scope_info.
	for name := range fams {
		if !slices.Contains(want, name) {
			t.Errorf("unexpected family %s", name)
		}
	}
}

func familyNames(fams map[string]*dto.MetricFamily) []string {
	var out []string
	for n := range fams {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// TestBoundedLabels: status codes outside HTTP's range and reason codes
// past the bound do not make new series without end.
func TestBoundedLabels(t *testing.T) {
	ctx := context.Background()
	tel, pm := newProxyMetrics(t)
	for i := range 3 * maxReasons {
		pm.Blocked(ctx, "CODE_"+strings.Repeat("X", i))
	}
	pm.Blocked(ctx, "")
	for _, code := range []int{-1, 0, 99, 600, 1 << 20} {
		pm.Request(ctx, Route(200), code, "bogus", 10)
	}
	fams := scrape(t, tel)
	if n := len(fams["portcullis_blocked_pulls_total"].GetMetric()); n > maxReasons+1 {
		t.Errorf("%d reason series, want at most %d", n, maxReasons+1)
	}
	if find(fams["portcullis_blocked_pulls_total"], map[string]string{"reason": "OTHER"}) == nil {
		t.Error("no OTHER reason series")
	}
	reqs := fams["portcullis_requests_total"]
	if len(reqs.GetMetric()) != 1 {
		t.Fatalf("requests series %v, want one (route other, code unknown)", reqs.GetMetric())
	}
	if got := labelsOf(reqs.GetMetric()[0]); got["route"] != "other" || got["code"] != "unknown" {
		t.Errorf("labels %v, want route other, code unknown", got)
	}
	for _, name := range []string{"portcullis_cache_requests_total", "portcullis_bytes_served_total"} {
		for _, m := range fams[name].GetMetric() {
			if m.GetCounter().GetValue() != 0 {
				t.Errorf("an unknown cache result was counted: %s %v", name, m)
			}
		}
	}
}

// TestNilMetrics: nil instruments and a nil meter record nothing and do not
// fail, so packages work unchanged without telemetry.
func TestNilMetrics(t *testing.T) {
	ctx := context.Background()
	var pm *ProxyMetrics
	pm.Request(ctx, RouteBlob, 200, "hit", 1)
	pm.Blocked(ctx, "X")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	if got := pm.CountRequests(RouteAPI, h); got == nil {
		t.Error("CountRequests on nil metrics returned nil")
	}
	var cm *CacheMetrics
	cm.DownloadStarted()
	cm.DownloadEnded()
	cm.Evicted()
	var um *UpstreamMetrics
	um.Request(ctx, 200, time.Second)
	var plm *PipelineMetrics
	plm.ScanFinished(ctx, true, time.Second)
	plm.Verdict(ctx, "allow", "enforce")
	if _, err := NewProxyMetrics(nil); err != nil {
		t.Error(err)
	}
	if err := ObserveQueueDepth(nil, func(context.Context) (int64, error) { return 0, errors.New("unused") }); err != nil {
		t.Error(err)
	}
}

// TestCountRequests counts API requests by the status they answered,
// streaming ones included.
func TestCountRequests(t *testing.T) {
	tel, pm := newProxyMetrics(t)
	h := pm.CountRequests(RouteAPI, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.NotFound(w, r)
		case "/stream":
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("flush through the counting writer: %v", err)
			}
		}
	}))
	for _, path := range []string{"/missing", "/stream", "/empty"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	fams := scrape(t, tel)
	for code, want := range map[string]float64{"404": 1, "200": 2} {
		m := find(fams["portcullis_requests_total"], map[string]string{"route": "api", "code": code})
		if m == nil || m.GetCounter().GetValue() != want {
			t.Errorf("api %s: %v, want %v", code, m, want)
		}
	}
}

func TestOTLPEnabled(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want bool
	}{
		{map[string]string{}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://127.0.0.1:4318/v1/metrics"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_METRICS_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, false},
	}
	for _, tc := range tests {
		if got := OTLPEnabled(func(k string) string { return tc.env[k] }); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.env, got, tc.want)
		}
	}
}

func TestMetricsMethodNotAllowed(t *testing.T) {
	tel, err := New(context.Background(), Options{Getenv: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	tel.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/metrics", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %d", rec.Code)
	}
}

// BenchmarkRequest is the metrics cost of one served request on the hot
// path: three counter additions with precomputed attribute sets.
func BenchmarkRequest(b *testing.B) {
	ctx := context.Background()
	_, pm := newProxyMetrics(b)
	b.ReportAllocs()
	for b.Loop() {
		pm.Request(ctx, RouteBlob, 200, "hit", 1<<20)
	}
}

// readerFromRecorder is a ResponseWriter whose ReadFrom records its source,
// as net/http's response turns ReadFrom of a file into sendfile.
type readerFromRecorder struct {
	*httptest.ResponseRecorder
	sources []io.Reader
}

func (r *readerFromRecorder) ReadFrom(src io.Reader) (int64, error) {
	r.sources = append(r.sources, src)
	return io.Copy(struct{ io.Writer }{r.ResponseRecorder}, src)
}

// A file served through the counting writer still reaches the underlying
// writer's ReadFrom (sendfile), and is counted as a 200.
func TestCountRequestsKeepsReadFrom(t *testing.T) {
	tel, pm := newProxyMetrics(t)
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte("file contents"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := pm.CountRequests(RouteOther, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		io.Copy(w, f)
	}))
	rec := &readerFromRecorder{ResponseRecorder: httptest.NewRecorder()}
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/file", nil))
	if len(rec.sources) != 1 {
		t.Fatalf("ReadFrom of the underlying writer called %d times, want once", len(rec.sources))
	}
	// io.Copy hands over the file itself or os's wrapper of it; either is
	// a syscall.Conn, which is what net's sendfile needs.
	if _, ok := rec.sources[0].(syscall.Conn); !ok {
		t.Fatalf("ReadFrom got a %T, not the file", rec.sources[0])
	}
	if rec.Body.String() != "file contents" {
		t.Fatalf("body %q", rec.Body.String())
	}
	m := find(scrape(t, tel)["portcullis_requests_total"], map[string]string{"route": "other", "code": "200"})
	if m == nil || m.GetCounter().GetValue() != 1 {
		t.Fatalf("requests counted: %v, want one 200", m)
	}
}

// newProxyMetrics is a telemetry without exporters and its proxy metrics,
// shut down when tb ends.
func newProxyMetrics(tb testing.TB) (*Telemetry, *ProxyMetrics) {
	tb.Helper()
	tel, err := New(context.Background(), Options{Getenv: noEnv})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { tel.Shutdown(context.Background()) })
	pm, err := NewProxyMetrics(tel.Meter())
	if err != nil {
		tb.Fatal(err)
	}
	return tel, pm
}
