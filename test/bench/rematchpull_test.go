package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/test/bench/fleet"
	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

const (
	// fleetImages is how many stored images the server re-matches, unless
	// PORTCULLIS_BENCH_FLEET says otherwise (fleetSize).
	fleetImages = 10_000
	// pullManifests and pullBlobs are the GETs of one measuring window.
	pullManifests = 10000
	pullBlobs     = 120
	pullBlobSize  = 8 << 20
)

// BenchmarkRematch10000PullPath runs the real server on a state file of
// 10,000 images (test/bench/fleet: scan records, verdicts in one to three
// repositories each, histories) whose inventories are the realistic ones of
// BenchmarkRematch1000 (a real Debian 12 dpkg status, varied; Go modules
// in 60%), with the Debian and Go OSV records as its database. Each
// iteration is one round of three windows: the pull path idle, a database
// update imported by `portcullis db import` beside the running server (the
// server's WatchDB notices it and re-matches all 10,000 images), the pull
// path measured again while that re-match runs. The pull path is warm
// manifest GETs by tag (4 clients) and warm 8 MiB blob GETs (1 client).
//
// Metrics: rematch-s (median wall time of a re-match of 10,000, from the
// server's own log lines), ms/image, state-write-MB (median bytes the
// server wrote to disk from the first re-match log line to the last, from
// /proc/<pid>/io: its state file, since the pull path is warm),
// manifest-ratio-busy/idle and blob-ratio-busy/idle (per round: throughput
// during the re-match over the idle window just before it; median, and
// -min over rounds).
//
// PORTCULLIS_BENCH_FLEET=N runs it on N images instead (for iterating: a
// round of 10,000 takes many minutes).
func BenchmarkRematch10000PullPath(b *testing.B) {
	ctx := context.Background()
	images := fleetSize(b)
	goOSV := goVulnDBDir(b)
	sources := []string{debianOSV, goOSV}
	dataDir := b.TempDir()
	db, err := vulndb.Open(filepath.Join(dataDir, "vulndb"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.Import(ctx, sources, nil); err != nil {
		b.Fatal(err)
	}
	// The records are stored as matched against this database, so the
	// server starts with nothing to re-match (one re-match of 10,000
	// takes minutes; the iterations measure it).
	invs := fillRealisticFleet(b, dataDir, db.Version(), images)
	db.Close()
	update := newUpdater(b, sources, invs)

	const repo, tag = "bench/rematch", "v1"
	up := testregistry.Start(b)
	manifest, blob := up.PushLargeBlobImage(b, repo, tag, pullBlobSize, 7)
	// A run lasts longer than the default tag TTL (5 minutes): the tag is
	// trusted for the whole run, so every manifest GET is a hit.
	cfg := filepath.Join(b.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "default_upstream: %s\nupstreams:\n  - {name: %s, url: %s, tag_ttl: 2h}\n", upstreamName, upstreamName, up.URL()), 0o600); err != nil {
		b.Fatal(err)
	}
	bin := harness.BuildPortcullis(b)
	pc := harness.StartPortcullis(quietTB{b}, bin, "--config", cfg, "--data", dataDir)
	c := newClient(b)

	manifestURL := pc.URL + "/v2/" + repo + "/manifests/" + tag
	hdr := http.Header{"Accept": {manifestAccept}}
	buf := make([]byte, copyBufSize)
	for range 3 { // resolve the tag, scan, decide, cache the blob
		if err := manifestGet(ctx, c, manifestURL, hdr, manifest.String(), ""); err != nil {
			b.Fatal(err)
		}
		mustFetchBlob(b, c, blobURL(pc.URL, repo, blob), blob, pullBlobSize, true, buf)
	}
	waitCached(b, pc.DataDir, blob, pullBlobSize)

	window := func() (manifestsPerSec, blobMBps float64) {
		d, err := hammer(ctx, c, manifestURL, hdr, manifest.String(), "hit", 4, pullManifests)
		if err != nil {
			b.Fatal(err)
		}
		manifestsPerSec = pullManifests / d.Seconds()
		start := time.Now()
		for range pullBlobs {
			mustFetchBlob(b, c, blobURL(pc.URL, repo, blob), blob, pullBlobSize, false, buf)
		}
		return manifestsPerSec, float64(pullBlobs*pullBlobSize) / 1e6 / time.Since(start).Seconds()
	}

	// The first window after the server started on a large state file
	// runs well below the later ones (seen: 111-217 manifests/s against
	// thousands); it warms the server and is not counted.
	for i := range 2 {
		warmManifests, warmBlobs := window()
		b.Logf("warm-up %d: manifests %.0f/s, blobs %.0f MB/s", i, warmManifests, warmBlobs)
	}

	var manifestRatios, blobRatios, rematchSecs, writtenMB []float64
	for i := 0; b.Loop(); i++ {
		idleManifests, idleBlobs := window()
		// Counted before each import, not from zero: the server logs a
		// re-match start when it starts too (a CPU profile shows one ~20 s
		// in, which logs no end line), so counting from zero began the
		// busy window as soon as the import ended, before this update's
		// re-match had started: during its listing of every stored record
		// or before the server even saw the new database.
		started := strings.Count(pc.Logs.String(), "re-matching stored inventories") + 1
		done := strings.Count(pc.Logs.String(), "re-matched stored inventories")

		path, err := update.write(i)
		if err != nil {
			b.Fatal(err)
		}
		out, err := exec.Command(bin, "db", "import", "--data", dataDir, path).CombinedOutput()
		os.Remove(path)
		if err != nil {
			b.Fatalf("portcullis db import: %v\n%s", err, out)
		}
		waitLogCount(b, pc, "re-matching stored inventories", started, 30*time.Second)
		writtenBefore := writeBytes(b, pc.Pid())
		busyManifests, busyBlobs := window()
		if n := strings.Count(pc.Logs.String(), "re-matched stored inventories"); n != done {
			b.Fatalf("the re-match ended before the busy window did (%d re-matches done, want %d): make the windows shorter", n, done)
		}
		done++
		b.Logf("round %d: manifests %.0f/s idle, %.0f/s busy; blobs %.0f MB/s idle, %.0f MB/s busy", i, idleManifests, busyManifests, idleBlobs, busyBlobs)
		waitLogCount(b, pc, "re-matched stored inventories", done, 15*time.Minute)
		writtenMB = append(writtenMB, float64(writeBytes(b, pc.Pid())-writtenBefore)/1e6)
		rematchSecs = append(rematchSecs, lastRematchSeconds(b, pc, images))
		manifestRatios = append(manifestRatios, busyManifests/idleManifests)
		blobRatios = append(blobRatios, busyBlobs/idleBlobs)
	}
	for _, xs := range [][]float64{manifestRatios, blobRatios, rematchSecs, writtenMB} {
		slices.Sort(xs)
	}
	b.ReportMetric(median(rematchSecs), "rematch-s")
	b.ReportMetric(median(rematchSecs)*1e3/float64(images+1), "ms/image")
	b.ReportMetric(median(writtenMB), "state-write-MB")
	b.ReportMetric(median(manifestRatios), "manifest-ratio-busy/idle")
	b.ReportMetric(manifestRatios[0], "manifest-ratio-min")
	b.ReportMetric(median(blobRatios), "blob-ratio-busy/idle")
	b.ReportMetric(blobRatios[0], "blob-ratio-min")
}

// fleetSize is PORTCULLIS_BENCH_FLEET (1 to 100,000), or fleetImages.
func fleetSize(b *testing.B) int {
	b.Helper()
	v := os.Getenv("PORTCULLIS_BENCH_FLEET")
	if v == "" {
		return fleetImages
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 100_000 {
		b.Fatalf("PORTCULLIS_BENCH_FLEET=%q: want a number of images from 1 to 100000", v)
	}
	return n
}

// writeBytes reads what process pid has caused to be written to disk
// (write_bytes of /proc/<pid>/io).
func writeBytes(b *testing.B, pid int) int64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		b.Fatalf("read the server's I/O counters: %v", err)
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "write_bytes:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				b.Fatalf("/proc/%d/io: %q: %v", pid, line, err)
			}
			return n
		}
	}
	b.Fatalf("/proc/%d/io has no write_bytes", pid)
	return 0
}

// fillRealisticFleet writes a fleet of images images into dataDir's state
// file and gives each the inventory of one of 1,000 realistic images
// (rematchInventories), which it returns, as matched against dbVersion.
func fillRealisticFleet(b *testing.B, dataDir, dbVersion string, images int) []*scanner.Inventory {
	b.Helper()
	ctx := context.Background()
	if _, err := fleet.FillDir(ctx, dataDir, images, 1); err != nil {
		b.Fatal(err)
	}
	invs := rematchInventories(b, 1000)
	st, err := store.OpenBolt(filepath.Join(dataDir, "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	for i := range images {
		d := fleet.Digest(i)
		inv := *invs[i%len(invs)]
		inv.ImageDigest = d
		_, err := store.UpdateScan(ctx, st, d, func(r *store.ScanRecord, exists bool) (bool, error) {
			if !exists {
				return false, fmt.Errorf("fleet image %s not stored", d)
			}
			r.Inventory, r.DBVersion = &inv, dbVersion
			return true, nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return invs
}

// waitLogCount waits until the server's log holds what at least n times.
func waitLogCount(b *testing.B, pc *harness.Portcullis, what string, n int, timeout time.Duration) {
	b.Helper()
	for deadline := time.Now().Add(timeout); strings.Count(pc.Logs.String(), what) < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("after %s: %q logged %d times, want %d", timeout, what, strings.Count(pc.Logs.String(), what), n)
		}
	}
}

// lastRematchSeconds reads the duration of the last re-match of a fleet of
// images images from the server's JSON log line.
func lastRematchSeconds(b *testing.B, pc *harness.Portcullis, images int) float64 {
	b.Helper()
	lines := strings.Split(pc.Logs.String(), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.Contains(lines[i], "re-matched stored inventories") {
			continue
		}
		var rec struct {
			Images  int     `json:"images"`
			Seconds float64 `json:"seconds"`
		}
		// The fleet and the image the pull path GETs.
		if err := json.Unmarshal([]byte(lines[i]), &rec); err != nil || rec.Images != images+1 {
			b.Fatalf("re-match log line %q: %v (want %d images)", lines[i], err, images+1)
		}
		return rec.Seconds
	}
	b.Fatal("no re-match log line")
	return 0
}
