package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/testregistry"
)

// BenchmarkWarmBlobTelemetry is BenchmarkWarmBlobGet's workload (GETs of
// one cached blob, Portcullis-Cache: hit) through a portcullis with all
// telemetry on and one with none (telemetry.metrics: false, no OTEL_*
// variables). The "on" side is scraped at /metrics every 100 ms meanwhile,
// pushes its metrics over OTLP/HTTP every second and exports every
// request's spans (OTEL_EXPORTER_OTLP_ENDPOINT turns on both) to a
// receiver in this process. Every round is one batch of GETs
// from each side, back to back, alternating which goes first; the ratio
// on/off is the median over rounds of the two batches' MB/s. Two sizes:
// 256 MiB, where the transfer dominates, and 1 MiB, where a per-request
// cost would show.
func BenchmarkWarmBlobTelemetry(b *testing.B) {
	for _, tc := range []struct {
		name          string
		size          int64
		getsPerBatch  int
		roundsPerIter int
	}{
		{"size=256MiB", 256 << 20, 1, 4},
		{"size=1MiB", 1 << 20, 50, 16},
	} {
		b.Run(tc.name, func(b *testing.B) {
			benchWarmBlobTelemetry(b, tc.size, tc.getsPerBatch, tc.roundsPerIter)
		})
	}
}

// otlpSink accepts OTLP/HTTP exports and counts them; the bodies are read
// and dropped (an empty body is an empty, valid export response).
type otlpSink struct {
	url     string
	exports atomic.Int64
}

func startOTLPSink(b *testing.B) *otlpSink {
	b.Helper()
	s := &otlpSink{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 64<<20))
		s.exports.Add(1)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	s.url = "http://" + ln.Addr().String()
	return s
}

// scrapeEvery GETs url every interval until stop is called, and reports
// how many scrapes answered 200.
func scrapeEvery(c *http.Client, url string, interval time.Duration) (stop func() (ok, failed int)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var good, bad int
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := c.Do(req)
			if err != nil {
				if ctx.Err() == nil {
					bad++
				}
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				good++
			} else {
				bad++
			}
		}
	})
	return func() (int, int) {
		cancel()
		wg.Wait()
		return good, bad
	}
}

func benchWarmBlobTelemetry(b *testing.B, size int64, getsPerBatch, roundsPerIter int) {
	const repo = "bench/warmtelemetry"
	up := testregistry.Start(b)
	_, blob := up.PushLargeBlobImage(b, repo, "v1", size, 9)
	sink := startOTLPSink(b)

	// The environment is read at start: the "off" side starts without
	// the OTLP variables, the "on" side with them.
	off := startWithConfig(b, upstreamConfig(up)+"telemetry: {metrics: false}\n")
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.url)
	b.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "1000")
	on := startWithConfig(b, upstreamConfig(up))
	o := &onOffBlob{sides: [2]stateSide{{"on", on}, {"off", off}}, blob: blob, size: size, getsPerBatch: getsPerBatch}
	r, err := newClient(b).Get(off.URL + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusNotFound {
		b.Fatalf("metrics off: GET /metrics answered %d, want 404", r.StatusCode)
	}
	o.warm(b, repo)
	exports0 := sink.exports.Load()
	stopScraping := scrapeEvery(newClient(b), on.URL+"/metrics", 100*time.Millisecond)

	start := time.Now()
	times, cpu, ratios := o.measure(b, roundsPerIter)
	elapsed := time.Since(start)
	scrapes, failed := stopScraping()
	if failed > 0 {
		b.Errorf("%d scrapes of /metrics failed", failed)
	}
	exports := sink.exports.Load() - exports0
	if elapsed > 3*time.Second && exports == 0 {
		b.Errorf("no OTLP export in %v with a 1 s interval", elapsed)
	}
	gets := float64(len(ratios) * getsPerBatch)
	total := gets * float64(size)
	b.ReportMetric(total/mb/times[0].Seconds(), "on-MB/s")
	b.ReportMetric(total/mb/times[1].Seconds(), "off-MB/s")
	b.ReportMetric(median(ratios), "ratio-on/off")
	perGet := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / gets }
	b.ReportMetric(perGet(cpu[0]), "on-cpu-us/GET")
	b.ReportMetric(perGet(cpu[1]), "off-cpu-us/GET")
	b.ReportMetric(float64(scrapes), "scrapes")
	b.ReportMetric(float64(exports), "otlp-exports")
}
