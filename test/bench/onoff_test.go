package bench

import (
	"net/http"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// onOffBlob is the warm-blob comparison of a portcullis with a feature on
// (sides[0]) and one with it off (sides[1]): GETs of one cached blob, a
// batch from each side per round, alternating which goes first.
type onOffBlob struct {
	sides        [2]stateSide
	urls         [2]string
	c            *http.Client
	blob         v1.Hash
	size         int64
	getsPerBatch int
	buf          []byte
}

// warm fills both caches (a miss, then a hit) and waits out the cache's
// racy window (100 ms, proxy/cache/verify.go), so both sides serve the
// file without hashing it; else the ratio measures which side happened to
// verify late enough.
func (o *onOffBlob) warm(b *testing.B, repo string) {
	b.Helper()
	o.c, o.buf = newClient(b), make([]byte, copyBufSize)
	for i, s := range o.sides {
		o.urls[i] = blobURL(s.pc.URL, repo, o.blob)
		if r := mustFetchBlob(b, o.c, o.urls[i], o.blob, o.size, true, o.buf); r.cache != "miss" {
			b.Fatalf("%s: first GET: Portcullis-Cache %q, want miss", s.name, r.cache)
		}
		waitCached(b, s.pc.DataDir, o.blob, o.size)
		if r := mustFetchBlob(b, o.c, o.urls[i], o.blob, o.size, true, o.buf); r.cache != "hit" {
			b.Fatalf("%s: second GET: Portcullis-Cache %q, want hit", s.name, r.cache)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for i := range o.sides {
		mustFetchBlob(b, o.c, o.urls[i], o.blob, o.size, false, o.buf)
	}
}

// measure runs roundsPerIter rounds per b.Loop iteration and returns each
// side's time and process CPU over all batches, and the per-round ratios
// on MB/s ÷ off MB/s (= time off ÷ time on).
func (o *onOffBlob) measure(b *testing.B, roundsPerIter int) (times, cpu [2]time.Duration, ratios []float64) {
	b.Helper()
	batch := func(side int) time.Duration {
		var d time.Duration
		for range o.getsPerBatch {
			r := mustFetchBlob(b, o.c, o.urls[side], o.blob, o.size, false, o.buf)
			if r.cache != "hit" {
				b.Fatalf("%s: Portcullis-Cache %q, want hit", o.sides[side].name, r.cache)
			}
			d += r.dur
		}
		return d
	}
	for i := 0; b.Loop(); i++ {
		for round := range roundsPerIter {
			var d [2]time.Duration
			first := (i*roundsPerIter + round) % 2
			for _, side := range []int{first, 1 - first} {
				pc0 := mustProcCPU(b, o.sides[side].pc.Pid())
				d[side] = batch(side)
				cpu[side] += mustProcCPU(b, o.sides[side].pc.Pid()) - pc0
				times[side] += d[side]
			}
			ratios = append(ratios, d[1].Seconds()/d[0].Seconds())
		}
	}
	return times, cpu, ratios
}
