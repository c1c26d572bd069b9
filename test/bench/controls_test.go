package bench

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/test/redisserver"
	"github.com/portcullis/portcullis/test/testregistry"
)

// BenchmarkManifestWarmControls is BenchmarkManifestByTagWarm's workload
// (warm manifest GETs by tag, all hits, manifestWorkers keep-alive
// goroutines) through one portcullis with its state in Redis, alternating
// rounds with no operator control in force and with one quarantine (of
// another digest) in force. The ratio is req/s with the quarantine over
// req/s without: what having any control in force costs every pull.
func BenchmarkManifestWarmControls(b *testing.B) {
	const (
		repo             = "bench/controls"
		tag              = "v1"
		manifestWorkers  = 8
		manifestRequests = 4000
	)
	up := testregistry.Start(b)
	want := up.Push(b, repo, tag, testregistry.RandomImage(b, 1, 1024, types.OCIManifestSchema1))
	rs := redisserver.Start(b)
	pc := startWithConfig(b, upstreamConfig(up)+redisStoreConfig(rs))
	st, err := store.NewRedis(infoClient(b, rs), "")
	if err != nil {
		b.Fatal(err)
	}
	info := infoClient(b, rs)
	c := newClient(b)
	path := "/v2/" + repo + "/manifests/" + tag
	hdr := http.Header{"Accept": {manifestAccept}}
	for _, wantSrc := range []string{"miss", "hit"} {
		r, err := fetch(b.Context(), c, pc.URL+path, hdr, true, make([]byte, 4096))
		if err != nil || r.digest != want.String() || r.cache != wantSrc {
			b.Fatalf("warm-up GET: digest %s, Portcullis-Cache %q, err %v; want %s, %s", r.digest, r.cache, err, want, wantSrc)
		}
	}
	other := digest.FromString("another image").String()
	setControls := func(on bool) {
		var err error
		if on {
			err = st.PutQuarantine(b.Context(), store.Quarantine{Digest: other, Reason: "bench", CreatedAt: time.Now()})
		} else if _, err = st.DeleteQuarantine(b.Context(), other); err == store.ErrNotFound {
			err = nil
		}
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Second) // every replica reloads within a second
	}
	var times, cpu [2]time.Duration
	var cmds [2]int64
	rounds := 0
	for i := 0; b.Loop(); i++ {
		for _, side := range []int{i % 2, 1 - i%2} {
			setControls(side == 1)
			pc0, rc0 := mustProcCPU(b, pc.Pid()), mustRedisInfo(b, info)
			d, err := hammer(b.Context(), c, pc.URL+path, hdr, want.String(), "hit", manifestWorkers, manifestRequests)
			if err != nil {
				b.Fatal(err)
			}
			rc1 := mustRedisInfo(b, info)
			cpu[side] += mustProcCPU(b, pc.Pid()) - pc0
			times[side] += d
			cmds[side] += rc1.commands - rc0.commands - 1
		}
		rounds++
	}
	total := float64(rounds * manifestRequests)
	b.ReportMetric(total/times[0].Seconds(), "none-req/s")
	b.ReportMetric(total/times[1].Seconds(), "quarantine-req/s")
	b.ReportMetric(times[0].Seconds()/times[1].Seconds(), "ratio-quarantine/none")
	b.ReportMetric(float64(cpu[0].Microseconds())/total, "none-cpu-us/req")
	b.ReportMetric(float64(cpu[1].Microseconds())/total, "quarantine-cpu-us/req")
	b.ReportMetric(float64(cmds[0])/total, "none-redis-cmds/req")
	b.ReportMetric(float64(cmds[1])/total, "quarantine-redis-cmds/req")
}
