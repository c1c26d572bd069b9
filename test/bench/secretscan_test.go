package bench

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/portcullis/portcullis/scanner"
)

// BenchmarkScanSecrets measures what the search for leaked secrets costs:
// full scans of the two generated images (no layer known) with secret
// detection on and off, one after the other in every round. Metrics:
// ratio-on/off (median over rounds, target ≤ 1.3) with its range, and the
// scan time of each.
func BenchmarkScanSecrets(b *testing.B) {
	debian, big := scanImages(b)
	for _, im := range []scanImage{debian, big} {
		b.Run("image="+im.name, func(b *testing.B) {
			quiet := scanner.WithLogger(slog.New(slog.DiscardHandler))
			on := scanner.New(quiet)
			off := scanner.New(quiet, scanner.WithSecretDetection(false))
			img := openScanImage(b, im)
			var ons, offs []time.Duration
			for b.Loop() {
				for _, run := range []struct {
					sc  *scanner.Scanner
					out *[]time.Duration
				}{{off, &offs}, {on, &ons}} {
					start := time.Now()
					if _, err := run.sc.Scan(context.Background(), img); err != nil {
						b.Fatal(err)
					}
					*run.out = append(*run.out, time.Since(start))
				}
			}
			ratios := make([]float64, len(ons))
			for i := range ons {
				ratios[i] = ons[i].Seconds() / offs[i].Seconds()
			}
			slices.Sort(ratios)
			slices.Sort(ons)
			slices.Sort(offs)
			b.ReportMetric(ratios[len(ratios)/2], "ratio-on/off")
			b.ReportMetric(ratios[0], "ratio-min")
			b.ReportMetric(ratios[len(ratios)-1], "ratio-max")
			b.ReportMetric(ons[len(ons)/2].Seconds(), "on-s/scan")
			b.ReportMetric(offs[len(offs)/2].Seconds(), "off-s/scan")
			b.ReportMetric(float64(im.uncompressed)/1e6, "image-MB")
		})
	}
}
