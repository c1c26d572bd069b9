package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/test/bench/osvgen"
	"github.com/portcullis/portcullis/test/harness"
)

// osvTestdata holds the shared real OSV records, one directory per
// ecosystem.
const osvTestdata = "../../../shared/testdata/osv"

// BenchmarkVulnDBFullSize builds a full-size OSV database (osvgen.FullSize:
// 300,000 records across the 13 ecosystems Portcullis downloads, multiplied
// from the shared real records and golang.org/x/vulndb) as osv.dev's
// all.zip archives, then measures with the real binary:
//
//   - import: 'portcullis db import' of the 13 archives into an empty
//     database: wall time and peak RSS (VmHWM, read from /proc while it
//     runs, and the kernel's ru_maxrss at exit), and the file size;
//   - update-first: 'portcullis db update --source-url' from a loopback
//     server standing in for osv.dev (ETag and Last-Modified, conditional
//     requests) on top of that import: it downloads every archive;
//   - update-1pct: the same after 1% of the records were revised in every
//     archive (a daily update);
//   - update-none: the same with nothing changed (every source 304);
//   - match: MatchVersioned of an image with 100 and 1,000 distinct
//     packages (a third of them at an affected version, see
//     fullSizeQueries) against the full database, in process: median and
//     p95 over 50 calls each; "-heavy" draws packages by record, so the
//     ones with many advisories dominate.
//
// Targets (issue 13): import ≤ 60 s and ≤ 400 MB; update of 1% ≤ 10 s;
// match ≤ 5 ms (100 packages) and ≤ 30 ms (1,000).
func BenchmarkVulnDBFullSize(b *testing.B) {
	bin := harness.BuildPortcullis(b)
	tmpl := loadTemplates(b)
	shares := osvgen.FullSize()
	if err := osvgen.Check(shares, tmpl); err != nil {
		b.Fatal(err)
	}
	mirror := b.TempDir()
	archives, err := osvgen.Write(mirror, shares, tmpl, osvgen.Options{})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(osvMirror(mirror))
	defer srv.Close()
	images := matchImages(shares, tmpl)
	for b.Loop() {
		if tmpl == nil {
			tmpl = loadTemplates(b)
		}
		data := b.TempDir()
		imp := runMeasured(b, bin, append([]string{"db", "import", "--data", data}, archives...)...)
		b.ReportMetric(imp.wall.Seconds(), "import-s")
		b.ReportMetric(float64(imp.peakRSS)/1e6, "import-peak-RSS-MB")
		b.ReportMetric(float64(imp.maxRSS)/1e6, "import-maxrss-MB")
		b.ReportMetric(float64(imp.peakAnon)/1e6, "import-anon-MB")
		info, err := os.Stat(filepath.Join(data, "vulndb", "vulndb.bolt"))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(info.Size())/1e6, "db-file-MB")

		update := []string{"db", "update", "--data", data, "--source-url", srv.URL}
		first := runMeasured(b, bin, update...)
		b.ReportMetric(first.wall.Seconds(), "update-first-s")
		b.ReportMetric(float64(first.maxRSS)/1e6, "update-first-maxrss-MB")
		b.ReportMetric(float64(first.peakAnon)/1e6, "update-first-anon-MB")

		if _, err := osvgen.Write(mirror, shares, tmpl, osvgen.Options{Revision: 1, RevisePer: 100}); err != nil {
			b.Fatal(err)
		}
		pct := runMeasured(b, bin, update...)
		b.ReportMetric(pct.wall.Seconds(), "update-1pct-s")
		b.ReportMetric(float64(pct.maxRSS)/1e6, "update-1pct-maxrss-MB")
		b.ReportMetric(float64(pct.peakAnon)/1e6, "update-1pct-anon-MB")
		none := runMeasured(b, bin, update...)
		b.ReportMetric(none.wall.Seconds(), "update-none-s")
		// The next iteration starts from the unrevised archives.
		if _, err := osvgen.Write(mirror, shares, tmpl, osvgen.Options{}); err != nil {
			b.Fatal(err)
		}
		// See dropForMatching.
		tmpl = nil
		dropForMatching()

		db, err := vulndb.Open(filepath.Join(data, "vulndb"))
		if err != nil {
			b.Fatal(err)
		}
		st, err := db.Status()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(st.Records), "records")
		for _, img := range images {
			wall, cpu, first, found := matchTimes(b, db, img.qs, 50)
			wall.report(b, img.name, "ms")
			cpu.report(b, img.name, "cpu-ms")
			b.ReportMetric(float64(first.Microseconds())/1e3, img.name+"-first-ms")
			b.ReportMetric(float64(found), img.name+"-findings")
		}
		db.Close()
	}
}

// loadTemplates loads the real records osvgen multiplies.
func loadTemplates(b *testing.B) osvgen.Templates {
	b.Helper()
	tmpl, err := osvgen.LoadTemplates(templateDirs(b)...)
	if err != nil {
		b.Fatal(err)
	}
	return tmpl
}

// dropForMatching collects the garbage before match times are taken,
// once the caller has let go of the templates: they are about 70 MB of
// maps of the real records on the heap, and marking them took 100 to
// 200 ms of CPU in each collection (GODEBUG=gctrace=1), which landed in
// the timed calls and made their p95 measure the benchmark's own heap
// rather than matching.
func dropForMatching() { runtime.GC() }

// matchImage is one image of the match measurements.
type matchImage struct {
	name string
	qs   []vulndb.Query
}

// matchImages are the four images matched: 100 and 1,000 packages,
// drawn by package name and by record ("-heavy").
func matchImages(shares []osvgen.Share, tmpl osvgen.Templates) []matchImage {
	var out []matchImage
	for _, n := range []int{100, 1000} {
		for _, heavy := range []bool{false, true} {
			name := fmt.Sprintf("match-%d", n)
			if heavy {
				name += "-heavy"
			}
			out = append(out, matchImage{name, fullSizeQueries(shares, tmpl, n, heavy)})
		}
	}
	return out
}

// templateDirs are the real records: the shared test data and the Go
// vulnerability database.
func templateDirs(b *testing.B) []string {
	entries, err := os.ReadDir(osvTestdata)
	if err != nil {
		b.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, filepath.Join(osvTestdata, e.Name()))
		}
	}
	return append(dirs, goVulnDBDir(b))
}

// osvMirror serves <dir>/<ecosystem>/all.zip as osv.dev's bucket does:
// with an ETag (the content's sha256) and Last-Modified, answering
// conditional requests with 304.
func osvMirror(dir string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rel := filepath.Clean("/" + r.URL.Path)
		f, err := os.Open(filepath.Join(dir, rel))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil || info.IsDir() {
			http.NotFound(w, r)
			return
		}
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("ETag", `"`+hex.EncodeToString(h.Sum(nil))+`"`)
		http.ServeContent(w, r, "all.zip", info.ModTime(), f)
	})
}

type measured struct {
	wall    time.Duration
	peakRSS int64 // VmHWM, last read from /proc before the process exited
	// peakAnon is the largest RssAnon read: VmHWM also counts the pages
	// of the bbolt files mapped in, which the kernel can drop under
	// memory pressure; RssAnon is the heap and stacks.
	peakAnon int64
	maxRSS   int64 // ru_maxrss at exit, as test/bench/peakrss reports it
}

// runMeasured runs the binary to completion under test/bench/peakrss,
// reading its VmHWM and RssAnon every 20 ms.
func runMeasured(b *testing.B, bin string, args ...string) measured {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := peakRSSCommand(ctx, b, bin, args...)
	var out strings.Builder
	run.Stdout, run.Stderr = &out, &out
	start := time.Now()
	if err := run.Start(); err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run.Wait() }()
	var m measured
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			m.wall = time.Since(start)
			if err != nil {
				b.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out.String())
			}
			maxRSS, err := run.maxRSS()
			if err != nil {
				b.Fatal(err)
			}
			m.maxRSS = maxRSS
			b.Logf("%s: %s, peak RSS %d MB (anonymous %d MB)\n%s", args[1], m.wall.Round(time.Millisecond), m.maxRSS/1e6, m.peakAnon/1e6, out.String())
			return m
		case <-tick.C:
			pid, ok := run.pid()
			if !ok {
				continue
			}
			if v, err := procStatusBytes(pid, "VmHWM"); err == nil {
				m.peakRSS = max(m.peakRSS, v)
			}
			if v, err := procStatusBytes(pid, "RssAnon"); err == nil {
				m.peakAnon = max(m.peakAnon, v)
			}
		}
	}
}

// fullSizeQueries is an image with n distinct packages of the generated
// database, drawn uniformly over package names (as an image holds each
// package once, whatever its number of advisories): a third at a version
// every range contains, a third past every fix, a third under a name no
// record lists. heavy draws by record instead, so packages with many
// advisories (a kernel, a libc) are drawn as often as they have records.
func fullSizeQueries(shares []osvgen.Share, tmpl osvgen.Templates, n int, heavy bool) []vulndb.Query {
	rng := rand.New(rand.NewPCG(uint64(n), 13))
	names := map[string][]int{} // base ecosystem → index of one record per package name
	for _, s := range shares {
		if _, ok := names[s.From]; ok {
			continue
		}
		seen := map[string]bool{}
		for i := range tmpl[s.From] {
			if name := firstPackage(osvgen.Record(s, tmpl[s.From], i, osvgen.Options{})); name != "" && !seen[name] {
				seen[name] = true
				names[s.From] = append(names[s.From], i)
			}
		}
	}
	var qs []vulndb.Query
	picked := map[string]bool{}
	for len(qs) < n {
		s := shares[rng.IntN(len(shares))]
		t := len(tmpl[s.From])
		i := rng.IntN(s.Count)
		if !heavy {
			byName := names[s.From]
			i = byName[rng.IntN(len(byName))] + t*rng.IntN(max(1, s.Count/t))
		}
		name := firstPackage(osvgen.Record(s, tmpl[s.From], i, osvgen.Options{}))
		if name == "" || picked[s.Ecosystem+" "+name] {
			continue
		}
		picked[s.Ecosystem+" "+name] = true
		switch len(qs) % 3 {
		case 0:
			qs = append(qs, vulndb.Query{Ecosystem: s.Ecosystem, Name: name, Version: "0.0.1"})
		case 1:
			qs = append(qs, vulndb.Query{Ecosystem: s.Ecosystem, Name: name, Version: "99999.0.0"})
		default:
			qs = append(qs, vulndb.Query{Ecosystem: s.Ecosystem, Name: name + "-absent", Version: "1.0.0"})
		}
	}
	return qs
}

func firstPackage(r map[string]any) string {
	aff, _ := r["affected"].([]any)
	if len(aff) == 0 {
		return ""
	}
	name, _ := aff[0].(map[string]any)["package"].(map[string]any)["name"].(string)
	return name
}

// matchTimes matches qs rounds times and returns the median and p95 of
// the call times (wall and the process's CPU time, which neighbours on a
// shared machine disturb less; it includes the collector's work), the
// time of the first call (the one that fills the matcher's cache of
// parsed range bounds with this image's) and the findings of one call.
func matchTimes(b *testing.B, db *vulndb.DB, qs []vulndb.Query, rounds int) (wall, cpu callTimes, first time.Duration, findings int) {
	b.Helper()
	var times, cpus []time.Duration
	for range rounds {
		start, startCPU := time.Now(), selfCPU()
		fs, _, err := db.MatchVersioned(context.Background(), qs)
		times = append(times, time.Since(start))
		cpus = append(cpus, selfCPU()-startCPU)
		if err != nil {
			b.Fatal(err)
		}
		findings = len(fs)
	}
	first = times[0]
	return percentiles(times), percentiles(cpus), first, findings
}

// callTimes is the median and p95 of some call times.
type callTimes struct{ p50, p95 time.Duration }

func percentiles(ts []time.Duration) callTimes {
	ts = slices.Clone(ts)
	slices.Sort(ts)
	return callTimes{ts[len(ts)/2], ts[len(ts)*95/100]}
}

// report reports the times in milliseconds as <name>-p50-<unit> and
// <name>-p95-<unit>.
func (c callTimes) report(b *testing.B, name, unit string) {
	b.ReportMetric(float64(c.p50.Microseconds())/1e3, name+"-p50-"+unit)
	b.ReportMetric(float64(c.p95.Microseconds())/1e3, name+"-p95-"+unit)
}

// BenchmarkVulnDBMatch measures only MatchVersioned against the full-size
// database (the match part of BenchmarkVulnDBFullSize, without the
// binary's import and updates), for profiling:
//
//	go test -run '^$' -bench VulnDBMatch -benchtime 20x -cpuprofile cpu.out ./test/bench/
//
// It imports the generated archives in process once; with
// PORTCULLIS_BENCH_VULNDB=<dir> it keeps the database in <dir> and reuses
// it on the next run (delete the directory after a change of the index
// format). Each iteration matches the 1,000-package image once; it
// reports the CPU time per match (match-cpu-ms), which neighbours on a
// shared machine disturb less than wall time.
func BenchmarkVulnDBMatch(b *testing.B) {
	db, shares, tmpl := openBenchVulnDB(b)
	qs := fullSizeQueries(shares, tmpl, 1000, false)
	var findings int
	b.ResetTimer()
	cpu := selfCPU()
	for b.Loop() {
		fs, _, err := db.MatchVersioned(context.Background(), qs)
		if err != nil {
			b.Fatal(err)
		}
		findings = len(fs)
	}
	b.ReportMetric(float64((selfCPU()-cpu).Microseconds())/1e3/float64(b.N), "match-cpu-ms")
	b.ReportMetric(float64(findings), "findings")
}

// openBenchVulnDB opens the full-size database of BenchmarkVulnDBMatch
// and BenchmarkVulnDBMatchTimes, importing the generated archives in
// process unless PORTCULLIS_BENCH_VULNDB names a directory that holds it
// from an earlier run. The database closes when the benchmark ends.
func openBenchVulnDB(b *testing.B) (*vulndb.DB, []osvgen.Share, osvgen.Templates) {
	b.Helper()
	dir := os.Getenv("PORTCULLIS_BENCH_VULNDB")
	if dir == "" {
		dir = filepath.Join(b.TempDir(), "vulndb")
	}
	tmpl, err := osvgen.LoadTemplates(templateDirs(b)...)
	if err != nil {
		b.Fatal(err)
	}
	shares := osvgen.FullSize()
	present, err := vulndb.Present(dir)
	if err != nil {
		b.Fatal(err)
	}
	db, err := vulndb.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if !present || db.Version() == "" {
		archives, err := osvgen.Write(b.TempDir(), shares, tmpl, osvgen.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := db.Import(context.Background(), archives, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	return db, shares, tmpl
}

// BenchmarkVulnDBMatchTimes is the match part of BenchmarkVulnDBFullSize
// (the same four images, 50 calls each, median and p95) on the database
// of BenchmarkVulnDBMatch, so that matching can be measured without the
// binary's import and updates:
//
//	PORTCULLIS_BENCH_VULNDB=<dir> go test -run '^$' -bench 'VulnDBMatchTimes' -benchtime 1x ./test/bench/
//
// Per image it also reports the heap allocations and bytes per call and
// the garbage collections that ran during the 50 calls (a p95 far above
// the median with many collections points at the collector).
func BenchmarkVulnDBMatchTimes(b *testing.B) {
	db, shares, tmpl := openBenchVulnDB(b)
	images := matchImages(shares, tmpl)
	tmpl = nil
	dropForMatching()
	for b.Loop() {
		for _, img := range images {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			const rounds = 50
			wall, cpu, first, found := matchTimes(b, db, img.qs, rounds)
			runtime.ReadMemStats(&after)
			wall.report(b, img.name, "ms")
			cpu.report(b, img.name, "cpu-ms")
			b.ReportMetric(float64(first.Microseconds())/1e3, img.name+"-first-ms")
			b.ReportMetric(float64(found), img.name+"-findings")
			b.ReportMetric(float64(after.Mallocs-before.Mallocs)/rounds, img.name+"-allocs/call")
			b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/rounds/1e6, img.name+"-MB/call")
			b.ReportMetric(float64(after.NumGC-before.NumGC), img.name+"-GCs")
		}
	}
}

// BenchmarkVulnDBUpdate measures only the 1% update of BenchmarkVulnDBFullSize
// (update-1pct), in process, for profiling:
//
//	go test -run '^$' -bench VulnDBUpdate -benchtime 3x -cpuprofile cpu.out ./test/bench/
//
// It builds the full-size database once by an Update from the generated
// archives (the stored sources name this run's loopback server, so it
// cannot be kept for the next run), then revises 1% of the records; each
// iteration copies that database and runs the Update of the revised
// archives on the copy. It reports the CPU time of the process per update
// (update-cpu-s), which includes the loopback server's. About 2 minutes.
func BenchmarkVulnDBUpdate(b *testing.B) {
	base := filepath.Join(b.TempDir(), "vulndb")
	tmpl, err := osvgen.LoadTemplates(templateDirs(b)...)
	if err != nil {
		b.Fatal(err)
	}
	shares := osvgen.FullSize()
	mirror := b.TempDir()
	srv := httptest.NewServer(osvMirror(mirror))
	defer srv.Close()
	sources := vulndb.SourcesAt(srv.URL)
	db, err := vulndb.Open(base)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := osvgen.Write(mirror, shares, tmpl, osvgen.Options{}); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Update(context.Background(), sources, nil, io.Discard); err != nil {
		b.Fatal(err)
	}
	db.Close()
	if _, err := osvgen.Write(mirror, shares, tmpl, osvgen.Options{Revision: 1, RevisePer: 100}); err != nil {
		b.Fatal(err)
	}
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), "vulndb")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.Fatal(err)
		}
		if err := copyFileTo(filepath.Join(base, "vulndb.bolt"), filepath.Join(dir, "vulndb.bolt")); err != nil {
			b.Fatal(err)
		}
		db, err := vulndb.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		// The copy keeps the stored ETags of the unrevised archives, so
		// every archive is downloaded again, as in update-1pct.
		b.StartTimer()
		before := selfCPU()
		stats, err := db.Update(context.Background(), sources, nil, io.Discard)
		cpu += selfCPU() - before
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
		if stats.Unchanged != 0 {
			b.Fatalf("%d archives unchanged, want every one revised", stats.Unchanged)
		}
		db.Close()
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "update-cpu-s")
}

func copyFileTo(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
