package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/redisserver"
	"github.com/portcullis/portcullis/test/testregistry"
)

// stateSide is one portcullis of a bolt-versus-Redis comparison: the same
// configuration but for the store section.
type stateSide struct {
	name string // "bolt" or "redis"
	pc   *harness.Portcullis
}

// startWithConfig writes config (YAML) into a file of its own and runs the
// real binary with it; the harness adds --listen and a fresh --data.
func startWithConfig(b *testing.B, config string) *harness.Portcullis {
	b.Helper()
	path := filepath.Join(b.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		b.Fatalf("write config: %v", err)
	}
	return harness.StartPortcullis(quietTB{b}, harness.BuildPortcullis(b), "--config", path)
}

// upstreamConfig is the configuration both sides share: up as the only and
// default upstream, filesystem storage in the data directory.
func upstreamConfig(up *testregistry.Registry) string {
	return fmt.Sprintf("default_upstream: %s\nupstreams:\n  - {name: %s, url: %s}\n", upstreamName, upstreamName, up.URL())
}

// redisStoreConfig is the store section that puts the state in rs.
func redisStoreConfig(rs *redisserver.Server) string {
	return fmt.Sprintf("store:\n  driver: redis\n  redis: {addrs: [%s]}\n", rs.Addr)
}

// startBoltAndRedis starts two portcullis processes in front of up, one
// with its state in bbolt (the default) and one with its state in a fresh
// redis-server, both keeping blobs on the filesystem, so that only the state
// differs. It returns them in that order and the redis-server.
func startBoltAndRedis(b *testing.B, up *testregistry.Registry) ([2]stateSide, *redisserver.Server) {
	b.Helper()
	rs := redisserver.Start(b)
	bolt := startWithConfig(b, upstreamConfig(up))
	red := startWithConfig(b, upstreamConfig(up)+redisStoreConfig(rs))
	return [2]stateSide{{"bolt", bolt}, {"redis", red}}, rs
}

// redisCounters is what the benchmarks read from a redis-server's INFO:
// commands it processed and the CPU it used, so far.
type redisCounters struct {
	commands int64
	cpu      time.Duration
}

// redisInfo reads redisCounters through c.
func redisInfo(ctx context.Context, c *redis.Client) (redisCounters, error) {
	raw, err := c.Info(ctx, "stats", "cpu").Result()
	if err != nil {
		return redisCounters{}, fmt.Errorf("redis INFO at %s: %w", c.Options().Addr, err)
	}
	return parseRedisInfo(raw)
}

// parseRedisInfo takes total_commands_processed, used_cpu_sys and
// used_cpu_user out of an INFO answer ("field:value" lines, "#" sections).
// A missing field is an error; the INFO of a foreign server is not trusted
// to be small, so only the first maxInfoLines lines are looked at.
func parseRedisInfo(raw string) (redisCounters, error) {
	const maxInfoLines = 1000
	var out redisCounters
	var seen int
	lines := 0
	for line := range strings.Lines(raw) {
		if lines++; lines > maxInfoLines {
			break
		}
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "total_commands_processed":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return redisCounters{}, fmt.Errorf("redis INFO %s: %w", k, err)
			}
			out.commands = n
			seen |= 1
		case "used_cpu_sys", "used_cpu_user":
			s, err := strconv.ParseFloat(v, 64)
			// NaN, infinities and absurd values would convert to garbage.
			if err != nil || !(s >= 0 && s < 1e9) {
				return redisCounters{}, fmt.Errorf("redis INFO %s: bad value %q", k, v)
			}
			out.cpu += time.Duration(s * float64(time.Second))
			if k == "used_cpu_sys" {
				seen |= 2
			} else {
				seen |= 4
			}
		}
	}
	if seen != 7 {
		return redisCounters{}, fmt.Errorf("redis INFO: total_commands_processed, used_cpu_sys or used_cpu_user missing")
	}
	return out, nil
}

// infoClient is one connection to rs for reading its INFO. One kept
// connection matters: a new one would add its handshake (HELLO) to the
// commands counted, where each reading adds exactly its own INFO.
func infoClient(b *testing.B, rs *redisserver.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: rs.Addr, PoolSize: 1, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second})
	b.Cleanup(func() { c.Close() })
	return c
}

func mustRedisInfo(b *testing.B, c *redis.Client) redisCounters {
	b.Helper()
	rc, err := redisInfo(b.Context(), c)
	if err != nil {
		b.Fatal(err)
	}
	return rc
}

// BenchmarkWarmBlobRedisVsBolt is BenchmarkWarmBlobGet's workload (GETs of
// one cached blob, Portcullis-Cache: hit) through a portcullis with bolt
// state and one with Redis state, both on filesystem storage. Every round
// is one batch of GETs from each side, back to back, alternating which
// goes first; the ratio redis/bolt is the median over rounds of the two
// batches' MB/s. Two sizes: 256 MiB, where the transfer dominates, and
// 1 MiB, where a per-request state look-up would show. The Redis side also
// reports the commands redis-server processed per GET: they include the
// replica's background queue polling (about 9 a second when idle), which
// only the 1 MiB case, with 50 GETs per window, makes negligible; a
// command a Lua script runs counts too. In the "linked" case the image's
// manifest is pulled first and decided, so the blob gate finds the image
// and reads its verdict, as after a real pull; without it the blob belongs
// to no image the gate knows.
func BenchmarkWarmBlobRedisVsBolt(b *testing.B) {
	for _, tc := range []struct {
		name          string
		size          int64
		getsPerBatch  int
		roundsPerIter int
		linked        bool
	}{
		{"size=256MiB", 256 << 20, 1, 4, false},
		{"size=1MiB", 1 << 20, 50, 16, false},
		{"size=1MiB,linked", 1 << 20, 50, 16, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			benchWarmBlobRedisVsBolt(b, tc.size, tc.getsPerBatch, tc.roundsPerIter, tc.linked)
		})
	}
}

// waitVerdict waits (at most a minute) until pc holds a verdict on image in
// upstream/repo, as its scan API reports it.
func waitVerdict(b *testing.B, c *http.Client, pc *harness.Portcullis, image v1.Hash, where string) {
	b.Helper()
	url := pc.URL + "/api/v1/scans/" + image.String() + "?repository=" + where
	deadline := time.Now().Add(time.Minute)
	for {
		verdict, err := verdictIn(b.Context(), c, url)
		switch {
		case err != nil:
			b.Fatal(err)
		case verdict != "":
			return
		case time.Now().After(deadline):
			b.Fatalf("no verdict on %s in %s within a minute", image, where)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// verdictIn reads the top-level verdict of a scan view at url ("": none,
// or no scan record yet).
func verdictIn(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		return "", nil
	case http.StatusOK:
	default:
		return "", fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, body)
	}
	var view struct {
		Verdict string `json:"verdict"`
	}
	if err := json.Unmarshal(body, &view); err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	return view.Verdict, nil
}

func benchWarmBlobRedisVsBolt(b *testing.B, size int64, getsPerBatch, roundsPerIter int, linked bool) {
	const repo = "bench/warmstate"
	up := testregistry.Start(b)
	image, blob := up.PushLargeBlobImage(b, repo, "v1", size, 7)
	sides, rs := startBoltAndRedis(b, up)
	info := infoClient(b, rs)
	c := newClient(b)
	buf := make([]byte, copyBufSize)

	// Warm-up: a cold GET fills each cache, the next must be a hit.
	var urls [2]string
	for i, s := range sides {
		urls[i] = blobURL(s.pc.URL, repo, blob)
		if r := mustFetchBlob(b, c, urls[i], blob, size, true, buf); r.cache != "miss" {
			b.Fatalf("%s: first GET: Portcullis-Cache %q, want miss", s.name, r.cache)
		}
		waitCached(b, s.pc.DataDir, blob, size)
		if r := mustFetchBlob(b, c, urls[i], blob, size, true, buf); r.cache != "hit" {
			b.Fatalf("%s: second GET: Portcullis-Cache %q, want hit", s.name, r.cache)
		}
		if linked {
			mu := s.pc.URL + "/v2/" + repo + "/manifests/" + image.String()
			if err := manifestGet(b.Context(), c, mu, http.Header{"Accept": {manifestAccept}}, image.String(), ""); err != nil {
				b.Fatalf("%s: %v", s.name, err)
			}
			waitVerdict(b, c, s.pc, image, upstreamName+"/"+repo)
		}
	}
	up.ResetCounts()

	batch := func(side int) time.Duration {
		var d time.Duration
		for range getsPerBatch {
			r := mustFetchBlob(b, c, urls[side], blob, size, false, buf)
			if r.cache != "hit" {
				b.Fatalf("%s: Portcullis-Cache %q, want hit", sides[side].name, r.cache)
			}
			d += r.dur
		}
		return d
	}
	var times, cpu [2]time.Duration
	var redisCmds int64
	var redisCPU time.Duration
	var ratios []float64
	for i := 0; b.Loop(); i++ {
		for round := range roundsPerIter {
			var d [2]time.Duration
			first := (i*roundsPerIter + round) % 2
			for _, side := range []int{first, 1 - first} {
				pc0 := mustProcCPU(b, sides[side].pc.Pid())
				var rc0 redisCounters
				if side == 1 {
					rc0 = mustRedisInfo(b, info)
				}
				d[side] = batch(side)
				if side == 1 {
					rc1 := mustRedisInfo(b, info)
					// One command counted is the INFO that read rc0.
					redisCmds += rc1.commands - rc0.commands - 1
					redisCPU += rc1.cpu - rc0.cpu
				}
				cpu[side] += mustProcCPU(b, sides[side].pc.Pid()) - pc0
				times[side] += d[side]
			}
			ratios = append(ratios, d[0].Seconds()/d[1].Seconds())
		}
	}
	if n := up.Count("", "/blobs/"); n != 0 {
		b.Errorf("the upstream saw %d blob requests during the warm GETs, want 0", n)
	}
	gets := float64(len(ratios) * getsPerBatch)
	total := gets * float64(size)
	b.ReportMetric(total/mb/times[0].Seconds(), "bolt-MB/s")
	b.ReportMetric(total/mb/times[1].Seconds(), "redis-MB/s")
	b.ReportMetric(median(ratios), "ratio-redis/bolt")
	perGet := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / gets }
	b.ReportMetric(perGet(cpu[0]), "bolt-cpu-us/GET")
	b.ReportMetric(perGet(cpu[1]), "redis-side-cpu-us/GET")
	b.ReportMetric(perGet(redisCPU), "redis-server-cpu-us/GET")
	b.ReportMetric(float64(redisCmds)/gets, "redis-cmds/GET")
}

// BenchmarkManifestByTagWarmRedisVsBolt is BenchmarkManifestByTagWarm's
// workload (manifest GETs by tag within the tag TTL, all hits, from
// manifestWorkers keep-alive goroutines) through a portcullis with bolt
// state and one with Redis state, both on filesystem storage, alternating
// which goes first. The ratio is Redis req/s over bolt req/s.
func BenchmarkManifestByTagWarmRedisVsBolt(b *testing.B) {
	const (
		repo             = "bench/manifeststate"
		tag              = "v1"
		manifestWorkers  = 8
		manifestRequests = 4000
	)
	up := testregistry.Start(b)
	want := up.Push(b, repo, tag, testregistry.RandomImage(b, 1, 1024, types.OCIManifestSchema1))
	sides, rs := startBoltAndRedis(b, up)
	info := infoClient(b, rs)
	c := newClient(b)
	path := "/v2/" + repo + "/manifests/" + tag
	hdr := http.Header{"Accept": {manifestAccept}}

	for _, s := range sides {
		for _, wantSrc := range []string{"miss", "hit"} {
			r, err := fetch(b.Context(), c, s.pc.URL+path, hdr, true, make([]byte, 4096))
			if err != nil || r.digest != want.String() || r.cache != wantSrc {
				b.Fatalf("%s: warm-up GET: digest %s, Portcullis-Cache %q, err %v; want %s, %s",
					s.name, r.digest, r.cache, err, want, wantSrc)
			}
		}
	}
	up.ResetCounts()

	var times, cpu [2]time.Duration
	var redisCmds int64
	var redisCPU time.Duration
	var rounds int
	for i := 0; b.Loop(); i++ {
		for _, side := range []int{i % 2, 1 - i%2} {
			pid := sides[side].pc.Pid()
			pc0 := mustProcCPU(b, pid)
			rc0 := mustRedisInfo(b, info)
			d, err := hammer(b.Context(), c, sides[side].pc.URL+path, hdr, want.String(), "hit", manifestWorkers, manifestRequests)
			if err != nil {
				b.Fatalf("%s: %v", sides[side].name, err)
			}
			rc1 := mustRedisInfo(b, info)
			cpu[side] += mustProcCPU(b, pid) - pc0
			times[side] += d
			if side == 1 {
				// Background work (queue reads, lease renewals) runs on the
				// bolt side's turn too: only the Redis side's window counts.
				redisCmds += rc1.commands - rc0.commands - 1
				redisCPU += rc1.cpu - rc0.cpu
			}
		}
		rounds++
	}
	if n := up.Count("", "/manifests/"); n != 0 {
		b.Errorf("the upstream saw %d manifest requests during the warm GETs, want 0", n)
	}
	total := float64(rounds * manifestRequests)
	b.ReportMetric(total/times[0].Seconds(), "bolt-req/s")
	b.ReportMetric(total/times[1].Seconds(), "redis-req/s")
	b.ReportMetric(times[0].Seconds()/times[1].Seconds(), "ratio-redis/bolt")
	perReq := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / total }
	b.ReportMetric(perReq(cpu[0]), "bolt-cpu-us/req")
	b.ReportMetric(perReq(cpu[1]), "redis-side-cpu-us/req")
	b.ReportMetric(perReq(redisCPU), "redis-server-cpu-us/req")
	b.ReportMetric(float64(redisCmds)/total, "redis-cmds/req")
}
