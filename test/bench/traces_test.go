package bench

import (
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/otlpreceiver"
	"github.com/portcullis/portcullis/test/testregistry"
)

// BenchmarkWarmBlobTraces is BenchmarkWarmBlobGet's workload (GETs of one
// cached blob, Portcullis-Cache: hit) through a portcullis with traces on,
// exported over OTLP/HTTP every 200 ms to a receiver in this process, and
// one started without the OTEL_* variables (traces off). Every round is one
// batch of GETs from each side, back to back, alternating which goes
// first; the ratio on/off is the median over rounds of the two batches'
// MB/s. Two sizes: 256 MiB, where the transfer dominates, and 1 MiB,
// where a per-request cost (two spans, their export) would show.
func BenchmarkWarmBlobTraces(b *testing.B) {
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
			benchWarmBlobTraces(b, tc.size, tc.getsPerBatch, tc.roundsPerIter)
		})
	}
}

func benchWarmBlobTraces(b *testing.B, size int64, getsPerBatch, roundsPerIter int) {
	const repo = "bench/warmtraces"
	up := testregistry.Start(b)
	_, blob := up.PushLargeBlobImage(b, repo, "v1", size, 11)
	rcv := otlpreceiver.Start(b)

	// The environment is read at start: "off" starts without the OTLP
	// variables, "on" with them.
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_TRACES_SAMPLER"} {
		b.Setenv(k, "")
	}
	off := startWithConfig(b, upstreamConfig(up))
	b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rcv.URL)
	b.Setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
	on := startWithConfig(b, upstreamConfig(up))
	o := &onOffBlob{sides: [2]stateSide{{"on", on}, {"off", off}}, blob: blob, size: size, getsPerBatch: getsPerBatch}
	o.warm(b, repo)
	// The "on" side really traces: its warm-up requests arrive as spans.
	rcv.WaitFor(b, 30*time.Second, "request span from the traced side", func(spans []otlpreceiver.Span) bool {
		for _, s := range spans {
			if s.Name == "GET blob" && s.Attrs["portcullis.cache"] == "hit" {
				return true
			}
		}
		return false
	})
	spans0 := len(rcv.Spans())

	times, cpu, ratios := o.measure(b, roundsPerIter)
	gets := float64(len(ratios) * getsPerBatch)
	// Every traced GET is a request span and a cache look-up; the last
	// batch may still sit in the exporter's queue.
	exported := rcv.WaitFor(b, 10*time.Second, "spans of the measured GETs", func(spans []otlpreceiver.Span) bool {
		return float64(len(spans)-spans0) >= gets // at least half of 2 per GET
	})
	total := gets * float64(size)
	b.ReportMetric(total/mb/times[0].Seconds(), "traces-on-MB/s")
	b.ReportMetric(total/mb/times[1].Seconds(), "traces-off-MB/s")
	b.ReportMetric(median(ratios), "ratio-on/off")
	b.ReportMetric(float64(cpu[0].Microseconds())/gets, "on-cpu-us/GET")
	b.ReportMetric(float64(cpu[1].Microseconds())/gets, "off-cpu-us/GET")
	b.ReportMetric(float64(len(exported)-spans0)/gets, "spans/GET")
}
