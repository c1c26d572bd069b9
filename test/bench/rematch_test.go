package bench

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

const (
	// rematchImages is how many stored inventories a database update
	// re-matches.
	rematchImages = 1000
	// debianOSV holds the Debian 12 OSV records (bookworm OVAL subset).
	debianOSV = "../../../shared/testdata/osv/debian"
	// goVulnDB is the Go vulnerability database as OSV (data/osv).
	goVulnDB = "golang.org/x/vulndb@v0.0.0-20261105234957-e22db6528018"
	// updateRecords is how many records each simulated database update
	// revises.
	updateRecords = 200
)

// BenchmarkRematch1000 measures the re-evaluation after a vulnerability
// database update: 1,000 stored inventories in a store.Bolt (realistic ones:
// a real Debian 12 minbase dpkg status scanned by the real scanner, varied
// per image, most images also carrying a Go binary's modules) are matched
// again by pipeline.Rematch, without reading any layer. Each iteration first
// imports an update revising updateRecords records (outside the timer), so
// the database version changes and every stored result is stale.
//
// The database is the Debian records from shared/testdata and all of
// golang.org/x/vulndb's data/osv (downloaded once through the module proxy).
// Sub-benchmarks: matcher=shared is what 'portcullis serve' uses
// (vulndb.Shared, which opens the database file around every use);
// matcher=db holds one vulndb.DB open, as 'portcullis scan' does.
// state=disk keeps the database and the store in $TMPDIR, as a server keeps
// them on its disk (bbolt syncs every commit); state=tmpfs in /dev/shm, which
// leaves out the cost of the syncs.
//
// Metrics: ms/image (Rematch time ÷ images re-matched), heap-growth-MB (how
// far the Go heap grew during a Rematch over its size after a GC just
// before, sampled every millisecond; the largest over iterations),
// match-ms/image (the same matcher asked directly for every inventory,
// no store: what matching alone costs), packages/image, findings/image,
// record-kB (a stored record's size).
func BenchmarkRematch1000(b *testing.B) {
	goOSV := goVulnDBDir(b)
	if _, err := os.Stat(debianOSV); err != nil {
		b.Fatalf("Debian OSV records: %v", err)
	}
	invs := rematchInventories(b, rematchImages)
	update := newUpdater(b, []string{debianOSV, goOSV}, invs)
	for _, mode := range []string{"shared", "db"} {
		for _, fs := range []string{"disk", "tmpfs"} {
			b.Run("matcher="+mode+"/state="+fs, func(b *testing.B) {
				dir := b.TempDir()
				if fs == "tmpfs" {
					dir = tmpfsDir(b)
				}
				benchRematch(b, dir, mode, []string{debianOSV, goOSV}, invs, update)
			})
		}
	}
}

// tmpfsDir is a temporary directory in memory (/dev/shm), so that the
// store's syncs cost nothing: the difference to state=disk is what the
// disk costs.
func tmpfsDir(b *testing.B) string {
	b.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs("/dev/shm", &st); err != nil || st.Type != 0x01021994 { // TMPFS_MAGIC
		b.Skip("no tmpfs at /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "portcullis-bench-")
	if err != nil {
		b.Skip("/dev/shm:", err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func benchRematch(b *testing.B, dir, mode string, sources []string, invs []*scanner.Inventory, update *updater) {
	ctx := context.Background()
	dbDir := filepath.Join(dir, "vulndb")
	db, err := vulndb.Open(dbDir)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.Import(ctx, sources, nil); err != nil {
		b.Fatal(err)
	}
	var matcher pipeline.Matcher
	var importFile func(path string) error
	switch mode {
	case "db":
		defer db.Close()
		matcher = db
		importFile = func(path string) error { _, err := db.Import(ctx, []string{path}, nil); return err }
	case "shared":
		db.Close()
		matcher = vulndb.NewShared(dbDir)
		importFile = func(path string) error {
			db, err := vulndb.Open(dbDir)
			if err != nil {
				return err
			}
			defer db.Close()
			_, err = db.Import(ctx, []string{path}, nil)
			return err
		}
	}

	st, err := store.OpenBolt(filepath.Join(dir, "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	for _, inv := range invs {
		err = st.PutScan(ctx, &store.ScanRecord{Digest: inv.ImageDigest, State: store.ScanDone,
			Upstream: "docker.io", Repository: "library/app", ScannerVersion: inv.ScannerVersion,
			QueuedAt: now, UpdatedAt: now, Inventory: inv, Findings: []vulndb.Finding{}})
		if err != nil {
			b.Fatal(err)
		}
	}
	pl := pipeline.New(pipeline.Options{Store: st, Matcher: matcher, ScannerVersion: scanner.Version,
		Logger: slog.New(slog.DiscardHandler)})
	// The first match, as after the scans: findings in every record.
	if n, err := pl.Rematch(ctx); err != nil || n != len(invs) {
		b.Fatalf("initial match: %d of %d, %v", n, len(invs), err)
	}

	var rematch time.Duration
	var peakHeap uint64
	images := 0
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		path, err := update.write(i)
		if err == nil {
			err = importFile(path)
			os.Remove(path)
		}
		if err != nil {
			b.Fatalf("database update: %v", err)
		}
		runtime.GC()
		stopSampling := sampleHeap(&peakHeap)
		b.StartTimer()
		start := time.Now()
		n, err := pl.Rematch(ctx)
		rematch += time.Since(start)
		b.StopTimer()
		stopSampling()
		b.StartTimer()
		if err != nil || n != len(invs) {
			b.Fatalf("rematch after update %d: %d of %d images, %v", i, n, len(invs), err)
		}
		images += n
	}
	b.StopTimer()
	b.ReportMetric(float64(rematch.Microseconds())/1e3/float64(images), "ms/image")
	b.ReportMetric(float64(peakHeap)/1e6, "heap-growth-MB")

	// Matching alone, for comparison: the same matcher, no store.
	start := time.Now()
	for _, inv := range invs {
		if _, _, err := matcher.MatchVersioned(ctx, inv.Queries()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(time.Since(start).Microseconds())/1e3/float64(len(invs)), "match-ms/image")

	pkgs, findings, size := 0, 0, 0
	err = st.Scans(ctx, func(r store.ScanRecord) bool {
		findings += len(r.Findings)
		raw, _ := json.Marshal(r)
		size += len(raw)
		return true
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, inv := range invs {
		pkgs += len(inv.Packages)
	}
	b.ReportMetric(float64(pkgs)/float64(len(invs)), "packages/image")
	b.ReportMetric(float64(findings)/float64(len(invs)), "findings/image")
	b.ReportMetric(float64(size)/1e3/float64(len(invs)), "record-kB")
}

// sampleHeap records into *peak the largest growth of the heap (live and
// not yet swept objects) over its size at the start, sampled every
// millisecond until the returned function is called.
func sampleHeap(peak *uint64) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	read := func() {
		metrics.Read(sample)
		if v := sample[0].Value.Uint64(); v > base && v-base > *peak {
			*peak = v - base
		}
	}
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			read()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished; read() }
}

// goVulnDBDir finds golang.org/x/vulndb's data/osv in the module cache,
// downloading the module through GOPROXY the first time. It runs outside
// the project's module, so go.mod and go.sum stay as they are.
func goVulnDBDir(b *testing.B) string {
	b.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", goVulnDB)
	cmd.Dir = b.TempDir()
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.Error != "" || info.Dir == "" {
		b.Fatalf("go mod download %s (needs the Go module proxy once): %v %s", goVulnDB, err, info.Error)
	}
	return filepath.Join(info.Dir, "data", "osv")
}

// rematchInventories makes n inventories as a fleet of images would have:
// the same Debian 12 base (testdata/debian12-minbase.dpkg-status, the real
// status file of 'debootstrap --variant=minbase bookworm', scanned by the
// real scanner) at different point releases, some slimmed, and in 60% of
// the images a Go service's modules and toolchain version.
func rematchInventories(b *testing.B, n int) []*scanner.Inventory {
	b.Helper()
	base := scanDebianBase(b)
	pointRelease := regexp.MustCompile(`\+deb12u([0-9]+)`)
	older := func(v string) string {
		return pointRelease.ReplaceAllStringFunc(v, func(m string) string {
			k, _ := strconv.Atoi(strings.TrimPrefix(m, "+deb12u"))
			if k < 2 {
				return m
			}
			return "+deb12u" + strconv.Itoa(k-1)
		})
	}
	invs := make([]*scanner.Inventory, n)
	for i := range invs {
		rng := rand.New(rand.NewPCG(uint64(i), 0x5eed))
		inv := *base
		inv.ImageDigest = fakeDigest("image", i)
		inv.Packages = nil
		// An older build of the base image: some packages one Debian
		// point release behind.
		stale := rng.Float64() < 0.5
		for _, p := range base.Packages {
			if rng.Float64() < 0.05 && p.Name != "base-files" {
				continue // slimmed: a few packages removed
			}
			if stale && rng.Float64() < 0.3 {
				if v := older(p.Version); v != p.Version {
					p.PURL = strings.Replace(p.PURL, "@"+purlEscape(p.Version), "@"+purlEscape(v), 1)
					p.Version = v
					p.SourceVersion = older(p.SourceVersion)
				}
			}
			inv.Packages = append(inv.Packages, p)
		}
		if rng.Float64() < 0.6 {
			layer := fakeDigest("app-layer", i)
			inv.Layers = append(slices.Clone(inv.Layers), scanner.Layer{Digest: layer, DiffID: fakeDigest("app-diff", i),
				Size: 20 << 20, MediaType: "application/vnd.oci.image.layer.v1.tar+gzip"})
			app := func(name, version string) scanner.Package {
				return scanner.Package{Name: name, Version: version, Ecosystem: "Go",
					PURL: "pkg:golang/" + name + "@v" + version, Type: "go-binary",
					Location: "/usr/local/bin/app", Layer: layer, LayerIndex: 1}
			}
			svc := app(fmt.Sprintf("example.com/team%d/service", i%40), "(devel)")
			svc.PURL = "pkg:golang/" + svc.Name + "@%28devel%29"
			inv.Packages = append(inv.Packages, svc, app("stdlib", goToolchains[rng.IntN(len(goToolchains))]))
			mods := slices.Clone(goModules)
			rng.Shuffle(len(mods), func(a, b int) { mods[a], mods[b] = mods[b], mods[a] })
			for _, m := range mods[:8+rng.IntN(len(mods)-8)] {
				inv.Packages = append(inv.Packages, app(m.path, m.versions[rng.IntN(len(m.versions))]))
			}
		}
		invs[i] = &inv
	}
	return invs
}

// scanDebianBase scans a one-layer image holding the real os-release and
// dpkg status of a Debian 12 minbase system.
func scanDebianBase(b *testing.B) *scanner.Inventory {
	b.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct{ name, src string }{
		{"etc/os-release", "testdata/debian12.os-release"},
		{"var/lib/dpkg/status", "testdata/debian12-minbase.dpkg-status"},
	} {
		data, err := os.ReadFile(f.src)
		if err != nil {
			b.Fatal(err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			b.Fatal(err)
		}
		tw.Write(data)
	}
	tw.Close()
	raw := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		b.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		b.Fatal(err)
	}
	inv, err := scanner.New().Scan(context.Background(), img)
	if err != nil {
		b.Fatal(err)
	}
	if len(inv.Packages) != 88 || inv.OS.Ecosystem != "Debian:12" {
		b.Fatalf("base inventory: %d packages, OS %+v; want the 88 of the status file on Debian:12", len(inv.Packages), inv.OS)
	}
	return inv
}

func fakeDigest(kind string, i int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s-%d", kind, i))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func purlEscape(v string) string { return strings.ReplaceAll(v, "+", "%2B") }

// goToolchains and goModules are what Go services commonly carry: real
// module versions, old and recent, vulnerable and not.
var goToolchains = []string{"1.20.14", "1.21.13", "1.22.12", "1.23.8", "1.24.4", "1.25.0", "1.26.8"}

var goModules = []struct {
	path     string
	versions []string
}{
	{"golang.org/x/net", []string{"0.0.0-20210226172049-e18ecbb05110", "0.7.0", "0.17.0", "0.23.0", "0.33.0"}},
	{"golang.org/x/text", []string{"0.3.5", "0.3.7", "0.14.0"}},
	{"golang.org/x/crypto", []string{"0.0.0-20201221181555-eec23a3978ad", "0.14.0", "0.31.0"}},
	{"golang.org/x/sys", []string{"0.0.0-20220412211240-33da011f77ad", "0.13.0"}},
	{"golang.org/x/oauth2", []string{"0.7.0", "0.26.0"}},
	{"google.golang.org/grpc", []string{"1.56.2", "1.58.3", "1.64.1"}},
	{"google.golang.org/protobuf", []string{"1.28.1", "1.33.0"}},
	{"github.com/gin-gonic/gin", []string{"1.7.7", "1.9.0", "1.9.1"}},
	{"gopkg.in/yaml.v2", []string{"2.2.7", "2.4.0"}},
	{"gopkg.in/yaml.v3", []string{"3.0.0-20210107192922-496545a6307b", "3.0.1"}},
	{"github.com/golang-jwt/jwt/v4", []string{"4.4.1", "4.5.1"}},
	{"github.com/prometheus/client_golang", []string{"1.11.0", "1.19.0"}},
	{"github.com/docker/docker", []string{"20.10.24+incompatible", "24.0.9+incompatible"}},
	{"github.com/opencontainers/runc", []string{"1.1.4", "1.1.12"}},
	{"k8s.io/client-go", []string{"0.26.0", "0.29.3"}},
	{"k8s.io/apimachinery", []string{"0.26.0", "0.29.3"}},
	{"github.com/hashicorp/go-getter", []string{"1.7.0", "1.7.5"}},
	{"github.com/containerd/containerd", []string{"1.6.18", "1.7.13"}},
	{"github.com/sirupsen/logrus", []string{"1.8.1", "1.9.3"}},
	{"github.com/spf13/cobra", []string{"1.6.1", "1.8.0"}},
	{"github.com/gorilla/websocket", []string{"1.4.2", "1.5.1"}},
	{"github.com/go-chi/chi/v5", []string{"5.0.8", "5.0.12"}},
	{"github.com/labstack/echo/v4", []string{"4.9.0", "4.11.4"}},
	{"github.com/valyala/fasthttp", []string{"1.34.0", "1.51.0"}},
	{"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp", []string{"0.44.0", "0.46.0"}},
	{"github.com/jackc/pgx/v5", []string{"5.4.3", "5.5.4"}},
	{"github.com/go-git/go-git/v5", []string{"5.4.2", "5.11.0"}},
	{"github.com/cloudflare/circl", []string{"1.3.3", "1.3.7"}},
	{"github.com/quic-go/quic-go", []string{"0.37.6", "0.42.0"}},
	{"github.com/emicklei/go-restful/v3", []string{"3.9.0", "3.11.0"}},
}

// updater writes simulated database updates: updateRecords records, half
// of them about packages the stored images carry, revised (new "modified"
// time and summary) differently in every update.
type updater struct {
	dir     string
	records []map[string]any
}

func newUpdater(b *testing.B, sources []string, invs []*scanner.Inventory) *updater {
	b.Helper()
	present := map[string]bool{}
	for _, inv := range invs {
		for _, p := range inv.Packages {
			present[p.Name] = true
			if p.SourceName != "" {
				present[p.SourceName] = true
			}
		}
	}
	var relevant, other []map[string]any
	for _, src := range sources {
		files, err := filepath.Glob(filepath.Join(src, "*.json"))
		if err != nil || len(files) == 0 {
			b.Fatalf("no OSV records in %s: %v", src, err)
		}
		slices.Sort(files)
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				b.Fatal(err)
			}
			var rec map[string]any
			if err := json.Unmarshal(data, &rec); err != nil {
				b.Fatalf("%s: %v", f, err)
			}
			if _, withdrawn := rec["withdrawn"]; withdrawn {
				continue
			}
			if affects(rec, present) {
				relevant = append(relevant, rec)
			} else {
				other = append(other, rec)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(relevant), func(i, j int) { relevant[i], relevant[j] = relevant[j], relevant[i] })
	rng.Shuffle(len(other), func(i, j int) { other[i], other[j] = other[j], other[i] })
	half := min(updateRecords/2, len(relevant))
	recs := append(relevant[:half:half], other[:min(updateRecords-half, len(other))]...)
	return &updater{dir: b.TempDir(), records: recs}
}

func affects(rec map[string]any, present map[string]bool) bool {
	affected, _ := rec["affected"].([]any)
	for _, a := range affected {
		pkg, _ := a.(map[string]any)["package"].(map[string]any)
		if name, _ := pkg["name"].(string); present[name] {
			return true
		}
	}
	return false
}

// write makes update number i as one JSON file holding an array of records.
func (u *updater) write(i int) (string, error) {
	out := make([]map[string]any, len(u.records))
	modified := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute).Format(time.RFC3339)
	for k, rec := range u.records {
		r := make(map[string]any, len(rec))
		for key, v := range rec {
			r[key] = v
		}
		r["modified"] = modified
		// The summary is part of what the database hashes into its
		// version (findings carry it), unlike "modified".
		summary, _ := rec["summary"].(string)
		if summary == "" {
			summary, _ = rec["id"].(string)
		}
		r["summary"] = fmt.Sprintf("%s (revised in update %d)", summary, i)
		out[k] = r
	}
	data, err := json.Marshal(out)
	if err != nil {
		return "", err
	}
	path := filepath.Join(u.dir, fmt.Sprintf("update-%d.json", i))
	return path, os.WriteFile(path, data, 0o644)
}
