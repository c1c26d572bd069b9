// Command hostile measures what a scan of a hostile image costs: it writes
// generated hostile layers (gzip-compressed tars) to a directory, then scans
// one of them in a fresh process and prints the peak RSS above the idle
// process, the Go heap figures and the wall time. It is not part of
// Portcullis; test/bench/scan/hostile.sh runs every case.
//
//	hostile gen  -dir DIR [-case NAME]   write DIR/NAME.tar.gz (all cases by default)
//	hostile scan -layer FILE             scan a one-layer image made of FILE
package main

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"

	"github.com/portcullis/portcullis/scanner"
)

// cases are the hostile layers, each a function writing tar entries.
var cases = map[string]func(w io.Writer) error{
	// 60,000 files named os-release of 64 KiB each, none of them at a path
	// the OS detection reads (the 6.7 MB layer, 3.9 GB RSS).
	"os-release-flood": withTar(func(tw *tar.Writer) error {
		body := bytes.Repeat([]byte("ID=x\n"), (64<<10)/5)
		for i := range 60_000 {
			if err := addFile(tw, fmt.Sprintf("srv/%d/etc/os-release", i), body); err != nil {
				return err
			}
		}
		return nil
	}),
	// A dpkg status listing 200,000 packages (about 50 MB).
	"dpkg-200k": withTar(func(tw *tar.Writer) error {
		var b bytes.Buffer
		for i := range 200_000 {
			fmt.Fprintf(&b, "Package: pkg%d\nStatus: install ok installed\nPriority: optional\nSection: misc\nInstalled-Size: 1\nMaintainer: Nobody <nobody@example.com>\nArchitecture: amd64\nSource: src%d\nVersion: 1.0-%d\nDescription: generated package\n\n", i, i/10, i)
		}
		return addFile(tw, "var/lib/dpkg/status", b.Bytes())
	}),
	// 1,000,000 whiteout entries, for paths nothing below ever had.
	"whiteout-1M": withTar(func(tw *tar.Writer) error {
		for i := range 1_000_000 {
			if err := addFile(tw, fmt.Sprintf("d%d/.wh.file-number-%d", i%1000, i), nil); err != nil {
				return err
			}
		}
		return nil
	}),
	// A jar whose MANIFEST.MF inflates to 128 MiB of header lines.
	"jar-manifest-bomb": withTar(func(tw *tar.Writer) error {
		jar, err := zipOf(func(zw *zip.Writer) error {
			w, err := zw.Create("META-INF/MANIFEST.MF")
			if err != nil {
				return err
			}
			line := bytes.Repeat([]byte("X-A: b\n"), 1<<20)
			for range (128 << 20) / len(line) {
				if _, err := w.Write(line); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		return addFile(tw, "app/bomb.jar", jar)
	}),
	// A jar of 2,000,000 empty entries (a central directory bomb).
	"jar-2M-entries": withTar(func(tw *tar.Writer) error {
		jar, err := zipOf(func(zw *zip.Writer) error {
			for i := range 2_000_000 {
				if _, err := zw.CreateHeader(&zip.FileHeader{Name: strconv.Itoa(i), Method: zip.Store}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		return addFile(tw, "app/entries.jar", jar)
	}),
	// Jars nested 9 deep, each holding 4 stored copies of the next one
	// (262,144 innermost jars).
	"jar-nested": withTar(func(tw *tar.Writer) error {
		inner, err := zipOf(func(zw *zip.Writer) error {
			w, err := zw.Create("META-INF/maven/g/a/pom.properties")
			if err != nil {
				return err
			}
			_, err = io.WriteString(w, "groupId=g\nartifactId=a\nversion=1\n")
			return err
		})
		if err != nil {
			return err
		}
		for range 9 {
			prev := inner
			inner, err = zipOf(func(zw *zip.Writer) error {
				for i := range 4 {
					w, err := zw.CreateHeader(&zip.FileHeader{Name: fmt.Sprintf("lib/n%d.jar", i), Method: zip.Store})
					if err != nil {
						return err
					}
					if _, err := w.Write(prev); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return addFile(tw, "app/nested.jar", inner)
	}),
	// 8 package.json files of 200 MB each (one long description).
	"npm-large": withTar(func(tw *tar.Writer) error {
		desc := strings.Repeat("a", 200<<20)
		body := []byte(`{"name":"big","version":"1.0.0","description":"` + desc + `"}`)
		for i := range 8 {
			if err := addFile(tw, fmt.Sprintf("app/node_modules/big%d/package.json", i), body); err != nil {
				return err
			}
		}
		return nil
	}),
	// 200 sparse package.json entries of 250 MiB each, with one byte of data:
	// 50 GiB of zeros for 100 KB of tar.
	"sparse": func(w io.Writer) error {
		for i := range 200 {
			if err := writeSparse(w, fmt.Sprintf("app/node_modules/s%d/package.json", i), 250<<20); err != nil {
				return err
			}
		}
		// End of archive: two zero blocks.
		_, err := w.Write(make([]byte, 1024))
		return err
	},
}

// withTar writes a case's entries through archive/tar.
func withTar(fill func(*tar.Writer) error) func(io.Writer) error {
	return func(w io.Writer) error {
		tw := tar.NewWriter(w)
		if err := fill(tw); err != nil {
			return err
		}
		return tw.Close()
	}
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = genCmd(os.Args[2:])
	case "scan":
		err = scanCmd(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: hostile gen -dir DIR [-case NAME] | hostile scan -layer FILE")
	os.Exit(2)
}

func genCmd(args []string) error {
	fl := flag.NewFlagSet("gen", flag.ExitOnError)
	dir := fl.String("dir", "", "output directory")
	only := fl.String("case", "", "one case (default all)")
	if err := fl.Parse(args); err != nil || *dir == "" {
		usage()
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range cases {
			if !yield(n) {
				return
			}
		}
	})
	for _, n := range names {
		if *only != "" && n != *only {
			continue
		}
		if err := writeLayer(filepath.Join(*dir, n+".tar.gz"), cases[n]); err != nil {
			return fmt.Errorf("case %s: %w", n, err)
		}
		fmt.Println(n)
	}
	return nil
}

func writeLayer(file string, fill func(io.Writer) error) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw, err := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	if err != nil {
		return err
	}
	if err := fill(zw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func addFile(tw *tar.Writer, name string, body []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	_, err := tw.Write(body)
	return err
}

func zipOf(fill func(*zip.Writer) error) ([]byte, error) {
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	if err := fill(zw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// writeSparse writes a PAX sparse file (format 1.0) by hand, since
// archive/tar does not write sparse files: realSize bytes of which only the
// first is stored.
func writeSparse(w io.Writer, name string, realSize int64) error {
	records := paxRecord("GNU.sparse.major", "1") + paxRecord("GNU.sparse.minor", "0") +
		paxRecord("GNU.sparse.name", name) + paxRecord("GNU.sparse.realsize", strconv.FormatInt(realSize, 10))
	if err := writeBlock(w, ustarHeader("PaxHeaders/"+strconv.Itoa(len(name)), 'x', int64(len(records)))); err != nil {
		return err
	}
	if err := writePadded(w, []byte(records)); err != nil {
		return err
	}
	sparseMap := []byte("1\n0\n1\n")
	if err := writeBlock(w, ustarHeader("GNUSparseFile.0/x", '0', 512+1)); err != nil {
		return err
	}
	if err := writePadded(w, sparseMap); err != nil {
		return err
	}
	return writePadded(w, []byte("{"))
}

func paxRecord(k, v string) string {
	size := len(k) + len(v) + 3
	size += len(strconv.Itoa(size))
	if len(strconv.Itoa(size)) > len(strconv.Itoa(size-len(strconv.Itoa(size)))) {
		size++
	}
	return fmt.Sprintf("%d %s=%s\n", size, k, v)
}

func ustarHeader(name string, typ byte, size int64) []byte {
	h := make([]byte, 512)
	copy(h[0:100], name)
	copy(h[100:108], "0000644\x00")
	copy(h[108:116], "0000000\x00")
	copy(h[116:124], "0000000\x00")
	copy(h[124:136], fmt.Sprintf("%011o\x00", size))
	copy(h[136:148], "00000000000\x00")
	h[156] = typ
	copy(h[257:263], "ustar\x00")
	copy(h[263:265], "00")
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

func writeBlock(w io.Writer, b []byte) error {
	_, err := w.Write(b)
	return err
}

func writePadded(w io.Writer, b []byte) error {
	pad := (512 - len(b)%512) % 512
	_, err := w.Write(append(slices.Clone(b), make([]byte, pad)...))
	return err
}

func scanCmd(args []string) error {
	fl := flag.NewFlagSet("scan", flag.ExitOnError)
	layerFile := fl.String("layer", "", "gzip layer file")
	if err := fl.Parse(args); err != nil || *layerFile == "" {
		usage()
	}
	l, err := newFileLayer(*layerFile)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return err
	}
	runtime.GC()
	idle, err := procStatusKB("VmRSS")
	if err != nil {
		return err
	}
	start := time.Now()
	inv, scanErr := scanner.New().Scan(context.Background(), img)
	wall := time.Since(start)
	peak, err := procStatusKB("VmHWM")
	if err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	result := "ok"
	if scanErr != nil {
		result = "error: " + scanErr.Error()
		if len(result) > 200 {
			result = result[:200] + "…"
		}
	} else {
		result = fmt.Sprintf("ok: %d packages", len(inv.Packages))
	}
	fmt.Printf("%s\tpeak-above-idle=%dMB\theap-sys=%dMB\ttotal-alloc=%dMB\twall=%.1fs\t%s\n",
		filepath.Base(*layerFile), (peak-idle)/1024, ms.HeapSys>>20, ms.TotalAlloc>>20, wall.Seconds(), result)
	return nil
}

func procStatusKB(field string) (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", field)
}

// fileLayer serves a gzip file as a layer's compressed form; its diff ID is
// not computed (that would decompress the whole layer once more), which the
// scanner does not need.
type fileLayer struct {
	file   string
	digest v1.Hash
	size   int64
}

func newFileLayer(file string) (*fileLayer, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, err
	}
	return &fileLayer{file: file, digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}, size: n}, nil
}

func (l *fileLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayer) Size() (int64, error)                 { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error)  { return types.OCILayer, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.file) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return nil, fmt.Errorf("not supported") }
