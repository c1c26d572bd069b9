package bench

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/badfiles"
	"github.com/portcullis/portcullis/scanner/clamd"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/test/clamdserver"
)

// BenchmarkScanSecrets measures what the search for leaked secrets and the
// check of known-bad files cost: full scans of the two generated images (no
// layer known) with both off, with secret detection on, and with secret
// detection and hash signatures on (sigsForBench: 100,000 ClamAV .hsb
// signatures of sizes spread from 1 KiB to 16 MiB), one after the other in
// every round. Metrics: ratio-on/off and ratio-all/off (medians over
// rounds, target ≤ 1.3) with their ranges, and the scan time of each.
func BenchmarkScanSecrets(b *testing.B) {
	debian, big := scanImages(b)
	sigs := sigsForBench(b)
	for _, im := range []scanImage{debian, big} {
		b.Run("image="+im.name, func(b *testing.B) {
			quiet := scanner.WithLogger(slog.New(slog.DiscardHandler))
			on := func() *scanner.Scanner { return scanner.New(quiet) }
			off := func() *scanner.Scanner { return scanner.New(quiet, scanner.WithSecretDetection(false)) }
			all := func() *scanner.Scanner {
				// A Checker serves one scan (it counts its findings).
				checker := &badfiles.Checker{Signatures: sigs}
				return scanner.New(quiet, scanner.WithFileInspector(checker.ForWalk(config.DefaultHashMaxFile)))
			}
			img := openScanImage(b, im)
			var ons, offs, alls []time.Duration
			for b.Loop() {
				for _, run := range []struct {
					sc  func() *scanner.Scanner
					out *[]time.Duration
				}{{off, &offs}, {on, &ons}, {all, &alls}} {
					sc := run.sc()
					start := time.Now()
					if _, err := sc.Scan(context.Background(), img); err != nil {
						b.Fatal(err)
					}
					*run.out = append(*run.out, time.Since(start))
				}
			}
			report := func(name string, xs []time.Duration) {
				ratios := make([]float64, len(xs))
				for i := range xs {
					ratios[i] = xs[i].Seconds() / offs[i].Seconds()
				}
				slices.Sort(ratios)
				b.ReportMetric(ratios[len(ratios)/2], "ratio-"+name+"/off")
				b.ReportMetric(ratios[0], "ratio-"+name+"-min")
				b.ReportMetric(ratios[len(ratios)-1], "ratio-"+name+"-max")
			}
			report("on", ons)
			report("all", alls)
			slices.Sort(ons)
			slices.Sort(offs)
			slices.Sort(alls)
			b.ReportMetric(ons[len(ons)/2].Seconds(), "on-s/scan")
			b.ReportMetric(alls[len(alls)/2].Seconds(), "all-s/scan")
			b.ReportMetric(offs[len(offs)/2].Seconds(), "off-s/scan")
			b.ReportMetric(float64(im.uncompressed)/1e6, "image-MB")
		})
	}
}

// sigsForBench imports 100,000 sha256 hash signatures (random hashes,
// sizes log-uniform from 1 KiB to 16 MiB, no size wildcard) into a
// database of its own and returns their matcher: every file of a size some
// signature has is hashed, as with a real feed.
func sigsForBench(b *testing.B) *vulndb.SignatureMatcher {
	b.Helper()
	dir := b.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	var feed bytes.Buffer
	hash := make([]byte, 32)
	for i := range 100_000 {
		for j := range hash {
			hash[j] = byte(rng.Uint32())
		}
		size := int64(math.Exp(math.Log(1<<10) + rng.Float64()*(math.Log(16<<20)-math.Log(1<<10))))
		fmt.Fprintf(&feed, "%x:%d:Bench.Sig.%d\n", hash, size, i)
	}
	feedDir := filepath.Join(dir, "feed")
	if err := os.MkdirAll(feedDir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(feedDir, "bench.hsb"), feed.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	db, err := vulndb.Open(filepath.Join(dir, "db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if _, err := db.Import(context.Background(), []string{feedDir}, nil); err != nil {
		b.Fatal(err)
	}
	m, err := db.SignatureMatcher(config.DefaultHashMaxFile)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkScanClamd reports what a real clamd costs a scan (issue 15 asks
// for the figure, with no target): full scans of the two generated images
// with every regular file up to scan.clamd_max_file streamed to Debian's
// clamd (test/clamdserver: a private daemon with the EICAR body signature
// only, so the figure is the streaming and clamd's per-file work, not a
// large signature set), against the same scan without clamd, alternating.
func BenchmarkScanClamd(b *testing.B) {
	debian, big := scanImages(b)
	server := clamdserver.Start(b, clamdserver.Config{Signatures: clamdserver.BodySignatures(), StreamMaxLength: "64M"})
	for _, im := range []scanImage{debian, big} {
		b.Run("image="+im.name, func(b *testing.B) {
			quiet := scanner.WithLogger(slog.New(slog.DiscardHandler))
			cl, err := clamd.New(server.UnixURL(), clamd.Options{Conns: 2, MaxFile: config.DefaultClamdMaxFile})
			if err != nil {
				b.Fatal(err)
			}
			img := openScanImage(b, im)
			var withs, withouts []time.Duration
			for b.Loop() {
				for _, run := range []struct {
					sc  *scanner.Scanner
					out *[]time.Duration
				}{
					{scanner.New(quiet), &withouts},
					{scanner.New(quiet, scanner.WithFileInspector((&badfiles.Checker{Clamd: cl, ClamdMaxFile: config.DefaultClamdMaxFile}).ForWalk(config.DefaultClamdMaxFile))), &withs},
				} {
					start := time.Now()
					if _, err := run.sc.Scan(context.Background(), img); err != nil {
						b.Fatal(err)
					}
					*run.out = append(*run.out, time.Since(start))
				}
			}
			ratios := make([]float64, len(withs))
			for i := range withs {
				ratios[i] = withs[i].Seconds() / withouts[i].Seconds()
			}
			slices.Sort(ratios)
			slices.Sort(withs)
			slices.Sort(withouts)
			b.ReportMetric(ratios[len(ratios)/2], "ratio-clamd/without")
			b.ReportMetric(withs[len(withs)/2].Seconds(), "clamd-s/scan")
			b.ReportMetric(withouts[len(withouts)/2].Seconds(), "without-s/scan")
		})
	}
}
