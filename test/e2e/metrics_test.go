package e2e

import (
	"bytes"
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	collectormetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// requiredFamilies are the metric families issue 10 names, with the label
// names each series carries. Dashboards outside the repository use them.
var requiredFamilies = map[string][]string{
	"portcullis_requests_total":                    {"code", "route"},
	"portcullis_cache_requests_total":              {"result"},
	"portcullis_bytes_served_total":                {"source"},
	"portcullis_upstream_requests_total":           {"code", "upstream"},
	"portcullis_upstream_request_duration_seconds": {"upstream"},
	"portcullis_inflight_downloads":                {},
	"portcullis_cache_size_bytes":                  {},
	"portcullis_cache_evictions_total":             {},
	"portcullis_scan_queue_depth":                  {},
	"portcullis_scan_duration_seconds":             {},
	"portcullis_scans_total":                       {"result"},
	"portcullis_verdicts_total":                    {"mode", "verdict"},
	"portcullis_blocked_pulls_total":               {"reason"},
	"portcullis_vulndb_age_seconds":                {},
	"portcullis_vulndb_records":                    {},
}

// scrapeMetrics GETs /metrics and parses it with the Prometheus text parser.
func scrapeMetrics(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	return scrapeMetricsWith(t, base, "")
}

// scrapeMetricsWith scrapes with the API token in tokenFile ("": none).
func scrapeMetricsWith(t *testing.T, base, tokenFile string) map[string]*dto.MetricFamily {
	t.Helper()
	var header []string
	if tokenFile != "" {
		tok, err := os.ReadFile(tokenFile)
		if err != nil {
			t.Fatal(err)
		}
		header = []string{"Authorization", "Bearer " + strings.TrimSpace(string(tok))}
	}
	r := do(t, "GET", base+"/metrics", header...)
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v %s", r.status, r.err, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("/metrics Content-Type %q, want the text format", ct)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, r.body)
	}
	return fams
}

// metricValue sums the series of name whose labels include want: counter
// and gauge values, histogram sample counts.
func metricValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	var sum float64
	for _, m := range fams[name].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// Every required family is exposed with its labels after real pulls, and
// the values follow what happened: hits, misses, a scan, verdicts, a block.
func TestMetricsAfterRealPulls(t *testing.T) {
	g := gateSetupWithUpstream(t, blockingPolicy)
	pc := g.pc
	host := strings.TrimPrefix(pc.URL, "http://")
	clean := ociImage(t, 64<<10)
	g.up.Push(t, "library/clean", "1", clean)
	before := scrapeMetrics(t, pc.URL)

	// A clean image pulled twice: misses, a scan, an allow, then hits.
	for i := range 2 {
		if out, err := exec.Command("go", "tool", "crane", "pull", "--insecure", host+"/library/clean:1", filepath.Join(t.TempDir(), "img.tar")).CombinedOutput(); err != nil {
			t.Fatalf("pull %d of the clean image: %v\n%s", i+1, err, out)
		}
	}
	// Alpine is refused for its vulnerability.
	if out, err := exec.Command("go", "tool", "crane", "manifest", "--insecure", host+"/alpine:3.16.9").CombinedOutput(); err == nil || !strings.Contains(string(out), "DENIED") {
		t.Fatalf("crane manifest of the blocked image: %v\n%s", err, out)
	}
	if r := do(t, "GET", pc.URL+"/api/v1/scans/"+g.manifest); r.status != http.StatusOK {
		t.Fatalf("status API: %d %s", r.status, r.body)
	}
	// A download's cache commit (and its end in the gauge) follows the
	// client's last byte: wait, bounded, for what is in flight to settle.
	var after map[string]*dto.MetricFamily
	for deadline := time.Now().Add(20 * time.Second); ; {
		after = scrapeMetrics(t, pc.URL)
		settled := metricValue(after, "portcullis_inflight_downloads", nil) == 0 && metricValue(after, "portcullis_scan_queue_depth", nil) == 0
		if settled || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	for name, labels := range requiredFamilies {
		fam := after[name]
		if fam == nil || len(fam.GetMetric()) == 0 {
			t.Errorf("family %s missing", name)
			continue
		}
		for _, m := range fam.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetName())
			}
			if strings.Join(got, ",") != strings.Join(labels, ",") {
				t.Errorf("%s series has labels %v, want %v", name, got, labels)
			}
		}
	}
	for name := range after {
		if _, ok := requiredFamilies[name]; !ok && strings.HasPrefix(name, "portcullis_") {
			t.Logf("extra family %s", name) // allowed (e.g. alerts), but worth seeing
		}
	}

	moved := []struct {
		name   string
		labels map[string]string
	}{
		{"portcullis_requests_total", map[string]string{"route": "blob", "code": "200"}},
		{"portcullis_requests_total", map[string]string{"route": "manifest", "code": "200"}},
		{"portcullis_requests_total", map[string]string{"route": "manifest", "code": "403"}},
		{"portcullis_requests_total", map[string]string{"route": "api", "code": "200"}},
		{"portcullis_requests_total", map[string]string{"route": "other", "code": "200"}}, // the first scrape
		{"portcullis_cache_requests_total", map[string]string{"result": "hit"}},
		{"portcullis_cache_requests_total", map[string]string{"result": "miss"}},
		{"portcullis_bytes_served_total", map[string]string{"source": "cache"}},
		{"portcullis_bytes_served_total", map[string]string{"source": "upstream"}},
		{"portcullis_upstream_requests_total", map[string]string{"upstream": "docker.io", "code": "200"}},
		{"portcullis_upstream_request_duration_seconds", map[string]string{"upstream": "docker.io"}},
		{"portcullis_scans_total", map[string]string{"result": "done"}},
		{"portcullis_scan_duration_seconds", nil},
		{"portcullis_verdicts_total", map[string]string{"verdict": "allow", "mode": "enforce"}},
		{"portcullis_verdicts_total", map[string]string{"verdict": "block", "mode": "enforce"}},
		{"portcullis_blocked_pulls_total", map[string]string{"reason": "VULNERABLE"}},
		{"portcullis_cache_size_bytes", nil},
	}
	for _, m := range moved {
		b, a := metricValue(before, m.name, m.labels), metricValue(after, m.name, m.labels)
		if a <= b {
			t.Errorf("%s%v did not move: %v before, %v after", m.name, m.labels, b, a)
		}
	}
	// The clean image's blobs: two requests each, the second a hit, every
	// byte counted once per response.
	if hits := metricValue(after, "portcullis_cache_requests_total", map[string]string{"result": "hit"}); hits < float64(len(layers(t, clean))) {
		t.Errorf("%v cache hits, want at least one per layer of the second pull", hits)
	}
	if got := metricValue(after, "portcullis_scans_total", map[string]string{"result": "failed"}); got != 0 {
		t.Errorf("%v failed scans", got)
	}
	if got := metricValue(after, "portcullis_vulndb_records", nil); got < 1 {
		t.Errorf("vulndb records %v, want the imported ones", got)
	}
	if got := metricValue(after, "portcullis_vulndb_age_seconds", nil); got <= 0 {
		t.Errorf("vulndb age %v, want > 0", got)
	}
	if got := metricValue(after, "portcullis_inflight_downloads", nil); got != 0 {
		t.Errorf("%v downloads in flight after every pull ended", got)
	}
	if got := metricValue(after, "portcullis_scan_queue_depth", nil); got != 0 {
		t.Errorf("scan queue depth %v after every scan ended", got)
	}
}

// Evictions to stay under cache.max_bytes are counted, and the size gauge
// stays under the bound.
func TestMetricsCountEvictions(t *testing.T) {
	up := startUpstream(t)
	pc := withConfig(t, up, `
default_upstream: up.test
upstreams: [{name: up.test, url: UPSTREAM_URL}]
cache: {max_bytes: 3MiB}
`)
	for i := range 4 {
		img := testregistryImage(t, 1<<20)
		up.Push(t, "team/app", itoa(i), img)
		if r := do(t, "GET", pc.URL+"/v2/team/app/blobs/"+layers(t, img)[0].String()); r.status != http.StatusOK {
			t.Fatalf("GET blob %d: %d %s", i, r.status, r.body)
		}
	}
	// Evictions follow the commits, just after the responses.
	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(20 * time.Second); ; {
		fams = scrapeMetrics(t, pc.URL)
		if metricValue(fams, "portcullis_cache_evictions_total", nil) >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := metricValue(fams, "portcullis_cache_evictions_total", nil); n < 1 {
		t.Errorf("%v evictions after 4 MiB of blobs under a 3 MiB bound", n)
	}
	if size := metricValue(fams, "portcullis_cache_size_bytes", nil); size <= 0 || size > 3<<20 {
		t.Errorf("cache size %v, want within (0, 3 MiB]", size)
	}
	if got := metricValue(fams, "portcullis_bytes_served_total", map[string]string{"source": "upstream"}); got < 4<<20 {
		t.Errorf("%v bytes served from upstream, want at least the four 1 MiB blobs", got)
	}
}

// telemetry.metrics: false serves no /metrics (and records nothing).
func TestMetricsOff(t *testing.T) {
	up := startUpstream(t)
	pc := withConfig(t, up, "upstreams: [{name: up.test, url: UPSTREAM_URL}]\ndefault_upstream: up.test\ntelemetry: {metrics: false}\n")
	if r := do(t, "GET", pc.URL+"/metrics"); r.status != http.StatusNotFound {
		t.Fatalf("GET /metrics with metrics off: %d %s", r.status, r.body)
	}
}

// otlpReceiver is an OTLP/HTTP metrics endpoint: it decodes each export
// request and keeps the metrics' names and the resource's service name.
type otlpReceiver struct {
	URL string

	mu       sync.Mutex
	names    map[string]*metricspb.Metric // last seen, by name
	service  string
	requests int
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	rcv := &otlpReceiver{names: map[string]*metricspb.Metric{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(rcv.serve), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	rcv.URL = "http://" + ln.Addr().String()
	return rcv
}

func (rcv *otlpReceiver) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/metrics" {
		http.NotFound(w, r)
		return
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, 16<<20)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = io.LimitReader(zr, 64<<20)
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collectormetrics.ExportMetricsServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rcv.mu.Lock()
	rcv.requests++
	for _, rm := range req.GetResourceMetrics() {
		for _, kv := range rm.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				rcv.service = kv.GetValue().GetStringValue()
			}
		}
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				rcv.names[m.GetName()] = m
			}
		}
	}
	rcv.mu.Unlock()
	out, _ := proto.Marshal(&collectormetrics.ExportMetricsServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// sumPoints adds the int data points of a sum metric whose attributes
// include want.
func sumPoints(m *metricspb.Metric, want map[string]string) int64 {
	var n int64
	for _, dp := range m.GetSum().GetDataPoints() {
		got := map[string]string{}
		for _, kv := range dp.GetAttributes() {
			got[kv.GetKey()] = kv.GetValue().GetStringValue()
		}
		match := true
		for k, v := range want {
			if got[k] != v {
				match = false
			}
		}
		if match {
			n += dp.GetAsInt()
		}
	}
	return n
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, the same metrics are pushed over
// OTLP/HTTP at OTEL_METRIC_EXPORT_INTERVAL.
func TestMetricsOverOTLP(t *testing.T) {
	rcv := startOTLPReceiver(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "200") // milliseconds
	s := start(t)
	img := ociImage(t, 4<<10)
	d := s.up.Push(t, "team/app", "v1", img)
	if r := do(t, "GET", s.pc.URL+"/v2/team/app/manifests/v1"); r.status != http.StatusOK {
		t.Fatalf("pull manifest: %d %s", r.status, r.body)
	}

	want := []string{"portcullis_requests_total", "portcullis_upstream_requests_total", "portcullis_upstream_request_duration_seconds",
		"portcullis_cache_size_bytes", "portcullis_scan_queue_depth", "portcullis_vulndb_records", "portcullis_cache_requests_total"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		rcv.mu.Lock()
		var missing []string
		for _, n := range want {
			if rcv.names[n] == nil {
				missing = append(missing, n)
			}
		}
		var manifests int64
		if m := rcv.names["portcullis_requests_total"]; m != nil {
			manifests = sumPoints(m, map[string]string{"route": "manifest", "code": "200"})
		}
		service, requests := rcv.service, rcv.requests
		rcv.mu.Unlock()
		if len(missing) == 0 && manifests >= 1 {
			if service != "portcullis" {
				t.Errorf("resource service.name %q, want portcullis", service)
			}
			t.Logf("%d OTLP export requests received; the pull of %s counted", requests, d)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %d OTLP exports: missing %v, manifest requests %d", requests, missing, manifests)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
