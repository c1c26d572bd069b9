package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/portcullis/portcullis/telemetry"
)

// BenchmarkWarmBlobServe is the per-request cost of a warm blob GET in the
// handler, with the request log (JSON, discarded) and metrics on: a small
// (about 1 KiB) verified blob, so the body's copy weighs nothing and what is
// measured is what portcullis adds to the file server's open, stat and
// send (routing, cache lookup, open, headers, log line, metrics). Read
// allocs/op. The gate is not in it (no BlobGate here); test/bench's
// BenchmarkWarmBlobGet measures the whole server.
func BenchmarkWarmBlobServe(b *testing.B) {
	metrics, err := telemetry.NewProxyMetrics(sdkmetric.NewMeterProvider().Meter("bench"))
	if err != nil {
		b.Fatal(err)
	}
	e := newEnv(b, withLog(io.Discard), func(c *envConfig) { c.metrics = metrics })
	img, err := random.Image(1024, 1)
	if err != nil {
		b.Fatal(err)
	}
	e.push(b, "team/app:1.0", img)
	ls, _ := img.Layers()
	layer, _ := ls[0].Digest()
	size, _ := ls[0].Size()
	path := "/v2/team/app/blobs/" + layer.String()
	get := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		e.p.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w
	}
	if w := get(); w.Code != http.StatusOK {
		b.Fatalf("first GET: %d %s", w.Code, w.Body)
	}
	// Committed and past the verification's racy window, then verified
	// by one whole GET: from here on a GET is the file alone.
	deadline := time.Now().Add(10 * time.Second)
	for get().Header().Get("Portcullis-Cache") != "hit" {
		if time.Now().After(deadline) {
			b.Fatal("blob not cached within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	get()
	b.ReportAllocs()
	for b.Loop() {
		if w := get(); w.Code != http.StatusOK || int64(w.Body.Len()) != size {
			b.Fatalf("GET: %d, %d bytes", w.Code, w.Body.Len())
		}
	}
}
