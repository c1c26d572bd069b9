package bench

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"

	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/test/harness"
)

// scanImage is a generated image written as a docker archive.
type scanImage struct {
	name         string
	archive      string
	layers       []v1.Layer
	uncompressed int64
}

// scanImages builds, from this machine's own files (a Debian 12 system),
// the two images of the scan benchmarks in a temporary directory:
//   - debian-100MB: one layer as a debian:12 image has, the real dpkg
//     status and os-release, and real executables and libraries of /usr up
//     to about 100 MB;
//   - multilayer-1GB: that layer and eight more of about 115 MB each (real
//     files of /usr/lib, /usr/share and the Go toolchain: libraries, Go
//     binaries, Python packages), the first of which rewrites the dpkg
//     status, as an `apt-get install` layer does.
func scanImages(b *testing.B) (debian, big scanImage) {
	b.Helper()
	debian, big, err := buildScanImages(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	return debian, big
}

// realFile is one regular file of the host.
type realFile struct {
	path string
	size int64
}

// hostFiles lists regular files under roots in lexical order, skipping
// those in skip, until their sizes reach limit (or maxFiles).
func hostFiles(roots []string, limit int64, skip map[string]bool) []realFile {
	const maxFiles = 200_000
	var out []realFile
	var total int64
	for _, root := range roots {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // unreadable: not part of the image
			}
			if total >= limit || len(out) >= maxFiles {
				return filepath.SkipAll
			}
			if !d.Type().IsRegular() || skip[p] {
				return nil
			}
			info, err := d.Info()
			if err != nil || info.Size() > 64<<20 {
				return nil
			}
			f, err := os.Open(p)
			if err != nil {
				return nil
			}
			f.Close()
			out = append(out, realFile{p, info.Size()})
			skip[p] = true
			total += info.Size()
			return nil
		})
	}
	return out
}

// writeLayer writes a gzip layer of the files (named by their host path,
// or as given in rename) to path and returns it as a v1.Layer.
func writeLayer(path string, files []realFile, rename map[string]string) (v1.Layer, int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	var total int64
	for _, rf := range files {
		name := rf.path[1:]
		if n, ok := rename[rf.path]; ok {
			name = n
		}
		src, err := os.Open(rf.path)
		if err != nil {
			return nil, 0, err
		}
		err = tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: rf.size, Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)})
		if err == nil {
			_, err = io.CopyN(tw, src, rf.size)
		}
		src.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("add %s to %s: %w", rf.path, path, err)
		}
		total += rf.size
	}
	if err := tw.Close(); err != nil {
		return nil, 0, err
	}
	if err := zw.Close(); err != nil {
		return nil, 0, err
	}
	if err := f.Close(); err != nil {
		return nil, 0, err
	}
	l, err := tarball.LayerFromFile(path)
	return l, total, err
}

func buildScanImages(dir string) (debian, big scanImage, err error) {
	skip := map[string]bool{}
	osFiles := []realFile{}
	for _, p := range []string{"/var/lib/dpkg/status", "/etc/os-release", "/usr/lib/os-release", "/etc/debian_version"} {
		info, err := os.Stat(p)
		if err != nil {
			return debian, big, fmt.Errorf("this benchmark reads a Debian system's files: %w", err)
		}
		osFiles = append(osFiles, realFile{p, info.Size()})
		skip[p] = true
	}
	baseFiles := append(osFiles, hostFiles([]string{"/usr/bin", "/usr/sbin", "/usr/lib/x86_64-linux-gnu"}, 100<<20-osFiles[0].size, skip)...)
	base, baseSize, err := writeLayer(filepath.Join(dir, "base.tar.gz"), baseFiles, nil)
	if err != nil {
		return debian, big, err
	}
	layers := []v1.Layer{base}
	bigSize := baseSize
	roots := []string{"/usr/lib", "/usr/share", "/usr/local/go", "/root/go/pkg/mod"}
	for i := range 8 {
		files := hostFiles(roots, 115<<20, skip)
		var rename map[string]string
		if i == 0 {
			// An install layer rewrites the whole dpkg status.
			files = append(files, osFiles[0])
			rename = map[string]string{osFiles[0].path: "var/lib/dpkg/status"}
		}
		l, n, err := writeLayer(filepath.Join(dir, fmt.Sprintf("layer%d.tar.gz", i)), files, rename)
		if err != nil {
			return debian, big, err
		}
		layers = append(layers, l)
		bigSize += n
	}
	write := func(name string, layers []v1.Layer, size int64) (scanImage, error) {
		img, err := mutate.AppendLayers(empty.Image, layers...)
		if err != nil {
			return scanImage{}, err
		}
		path := filepath.Join(dir, name+".tar")
		if err := tarball.WriteToFile(path, nil, img); err != nil {
			return scanImage{}, fmt.Errorf("write %s: %w", path, err)
		}
		archived, err := scanner.ImageFromArchive(path)
		if err != nil {
			return scanImage{}, err
		}
		ls, err := archived.Layers()
		return scanImage{name: name, archive: path, layers: ls, uncompressed: size}, err
	}
	if debian, err = write("debian-100MB", layers[:1], baseSize); err != nil {
		return debian, big, err
	}
	big, err = write("multilayer-1GB", layers, bigSize)
	return debian, big, err
}

// openScanImage opens the archive as the scanner sees it.
func openScanImage(b *testing.B, im scanImage) v1.Image {
	b.Helper()
	img, err := scanner.ImageFromArchive(im.archive)
	if err != nil {
		b.Fatal(err)
	}
	return img
}

// readLayers decompresses and walks the tar of every layer without
// looking at any file: the least any scan must do, the baseline.
func readLayers(img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		zr, err := gzip.NewReader(rc)
		if err == nil {
			tr := tar.NewReader(zr)
			for err == nil {
				_, err = tr.Next()
			}
			if err == io.EOF {
				err = nil
			}
		}
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// twoWorkers runs f twice at once, as a server with scan.workers 2 does.
func twoWorkers(f func() error) (time.Duration, error) {
	start := time.Now()
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- f() }()
	}
	err := <-errs
	if e := <-errs; err == nil {
		err = e
	}
	return time.Since(start), err
}

// BenchmarkScanThroughput measures full scans (no layer known) of the two
// generated images with two workers, in alternating rounds with the
// baseline: the same two workers only decompressing and walking the
// layers' tar streams. Metrics: images/min (two per round), MB/s
// (uncompressed), ratio-scan/read (median over rounds, and the range), and
// peak-RSS-MB of `portcullis scan --format spdx --archive` on the image (a
// separate process, the whole scan: archive, layers, extractors, SBOM).
func BenchmarkScanThroughput(b *testing.B) {
	debian, big := scanImages(b)
	bin := harness.BuildPortcullis(b)
	for _, im := range []scanImage{debian, big} {
		b.Run("image="+im.name, func(b *testing.B) {
			sc := scanner.New(scanner.WithLogger(slog.New(slog.DiscardHandler)))
			img := openScanImage(b, im)
			var scans, reads []time.Duration
			for b.Loop() {
				d, err := twoWorkers(func() error { return readLayers(img) })
				if err != nil {
					b.Fatal(err)
				}
				reads = append(reads, d)
				d, err = twoWorkers(func() error { _, err := sc.Scan(context.Background(), img); return err })
				if err != nil {
					b.Fatal(err)
				}
				scans = append(scans, d)
			}
			var total time.Duration
			ratios := make([]float64, len(scans))
			for i := range scans {
				total += scans[i]
				ratios[i] = scans[i].Seconds() / reads[i].Seconds()
			}
			slices.Sort(ratios)
			b.ReportMetric(float64(2*len(scans))/total.Minutes(), "images/min")
			b.ReportMetric(float64(2*len(scans))*float64(im.uncompressed)/1e6/total.Seconds(), "MB/s")
			b.ReportMetric(ratios[len(ratios)/2], "ratio-scan/read")
			b.ReportMetric(ratios[0], "ratio-min")
			b.ReportMetric(ratios[len(ratios)-1], "ratio-max")
			b.ReportMetric(float64(im.uncompressed)/1e6, "image-MB")

			run := peakRSSCommand(b.Context(), b, bin, "scan", "--format", "spdx", "--archive", im.archive)
			var stderr strings.Builder
			run.Stdout, run.Stderr = io.Discard, &stderr // the SBOM, the log
			if err := run.Run(); err != nil {
				b.Fatalf("portcullis scan: %v\n%s", err, stderr.String())
			}
			peak, err := run.maxRSS()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(peak)/mb, "peak-RSS-MB")
		})
	}
}

// BenchmarkRescanKnownLayers measures a scan that starts from stored layer
// states in a bbolt state file (store.Bolt, on disk), as `portcullis serve`
// keeps them: every layer known (the same image again, or another tag of
// it), and a new tag of the Debian image (its layer known, one new layer
// of about 5 MB of real files to read). The baseline, in the same process,
// is the full scan of the same image. Metrics: p50-ms/scan and max-ms/scan
// over the iterations, full-ms/scan, ratio-known/full (p50 over full),
// state-kB (the stored state after the image's top layer).
func BenchmarkRescanKnownLayers(b *testing.B) {
	debian, big := scanImages(b)
	ctx := context.Background()
	newTagLayer, _, err := writeLayer(filepath.Join(b.TempDir(), "app.tar.gz"), hostFiles([]string{"/usr/libexec"}, 5<<20, map[string]bool{}), nil)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		image func(b *testing.B) v1.Image
		known []v1.Layer // scanned before the timer
	}{
		{"all-known/image=debian-100MB", func(b *testing.B) v1.Image { return openScanImage(b, debian) }, debian.layers},
		{"all-known/image=multilayer-1GB", func(b *testing.B) v1.Image { return openScanImage(b, big) }, big.layers},
		{"new-tag/image=debian-100MB+5MB", func(b *testing.B) v1.Image {
			img, err := mutate.AppendLayers(openScanImage(b, debian), newTagLayer)
			if err != nil {
				b.Fatal(err)
			}
			return img
		}, debian.layers},
	} {
		b.Run(tc.name, func(b *testing.B) {
			st, err := store.OpenBolt(filepath.Join(b.TempDir(), "state.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			quiet := scanner.WithLogger(slog.New(slog.DiscardHandler))
			cached := scanner.New(quiet, scanner.WithLayerCache(st))
			full := scanner.New(quiet)
			known, err := mutate.AppendLayers(empty.Image, tc.known...)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := cached.Scan(ctx, known); err != nil {
				b.Fatal(err)
			}
			img := tc.image(b)
			want, err := full.Scan(ctx, img)
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			if _, err := full.Scan(ctx, img); err != nil {
				b.Fatal(err)
			}
			fullTime := time.Since(start)
			var times []time.Duration
			for b.Loop() {
				start := time.Now()
				got, err := cached.Scan(ctx, img)
				times = append(times, time.Since(start))
				if err != nil {
					b.Fatal(err)
				}
				if len(got.Packages) != len(want.Packages) || got.OS != want.OS {
					b.Fatalf("cached scan: %d packages, OS %+v; full scan: %d, %+v", len(got.Packages), got.OS, len(want.Packages), want.OS)
				}
			}
			slices.Sort(times)
			median := times[len(times)/2]
			b.ReportMetric(float64(median.Microseconds())/1e3, "p50-ms/scan")
			b.ReportMetric(float64(times[len(times)-1].Microseconds())/1e3, "max-ms/scan")
			b.ReportMetric(float64(fullTime.Microseconds())/1e3, "full-ms/scan")
			b.ReportMetric(median.Seconds()/fullTime.Seconds(), "ratio-known/full")
			if data, ok, err := st.LayerState(ctx, cached.LayerStateKey(img)); err == nil && ok {
				b.ReportMetric(float64(len(data))/1e3, "state-kB")
			}
			b.ReportMetric(float64(len(want.Packages)), "packages")
		})
	}
}
