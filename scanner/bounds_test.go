package scanner

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
)

// keptContent counts the remembered files whose content is held in memory.
func keptContent(st *fsState) (n int, bytes int) {
	for _, e := range st.entries {
		if e.content != nil {
			n++
			bytes += len(e.content)
		}
	}
	return n, bytes
}

// Only the OS identification files the detection can reach are kept: a
// flood of files named os-release elsewhere costs nothing (it cost 64 KiB
// each, without a total), and links still lead to their targets.
func TestOSFilesKeptOnlyWhereTheyMatter(t *testing.T) {
	t.Parallel()
	var flood []entry
	for i := range 2000 {
		flood = append(flood, file(fmt.Sprintf("srv/%d/etc/os-release", i), alpineOSRelease))
		flood = append(flood, file(fmt.Sprintf("srv/%d/etc/debian_version", i), "12.1\n"))
	}
	fedora := "ID=fedora\nVERSION_ID=40\n"
	tests := []struct {
		name     string
		layers   [][]entry
		want     OS
		maxKept  int
		keptPath string
	}{
		{"flood beside the real file", [][]entry{append(flood, file("etc/os-release", debianOSRelease))},
			OS{ID: "debian", VersionID: "12", PrettyName: "Debian GNU/Linux 12 (bookworm)", Ecosystem: "Debian:12"}, 1, "etc/os-release"},
		{"flood alone", [][]entry{flood}, OS{}, 0, ""},
		{"link chain to a file with another name, target after the links", [][]entry{{
			symlink("etc/os-release", "../usr/lib/os-release"),
			symlink("usr/lib/os-release", "os.release.d/os-release-container"),
			file("usr/lib/os.release.d/os-release-container", fedora),
		}}, OS{ID: "fedora", VersionID: "40"}, 1, "usr/lib/os.release.d/os-release-container"},
		{"target before the links in the same layer", [][]entry{{
			file("usr/lib/os.release.d/os-release-container", fedora),
			symlink("usr/lib/os-release", "os.release.d/os-release-container"),
			symlink("etc/os-release", "/usr/lib/os-release"),
		}}, OS{ID: "fedora", VersionID: "40"}, 1, "usr/lib/os.release.d/os-release-container"},
		{"symlinked etc directory", [][]entry{append(flood[:10:10],
			file("usr/etc/os-release", alpineOSRelease),
			symlink("etc", "usr/etc"),
		)}, OS{ID: "alpine", VersionID: "3.16.9", PrettyName: "Alpine Linux v3.16", Ecosystem: "Alpine:v3.16"}, 1, "usr/etc/os-release"},
		{"link target kept from a lower layer while the link stays", [][]entry{
			{symlink("etc/os-release", "../usr/lib/os-release"), file("usr/lib/os-release", debianOSRelease)},
			{file("srv/os-release", alpineOSRelease)},
		}, OS{ID: "debian", VersionID: "12", PrettyName: "Debian GNU/Linux 12 (bookworm)", Ecosystem: "Debian:12"}, 1, "usr/lib/os-release"},
		{"whiteout of the link target", [][]entry{
			{symlink("etc/os-release", "../usr/share/os-release"), file("usr/share/os-release", debianOSRelease)},
			{whiteout("usr/share/os-release")},
		}, OS{}, 0, ""},
		{"link replaced by a file: the old target goes", [][]entry{
			{symlink("etc/os-release", "../usr/share/os-release"), file("usr/share/os-release", debianOSRelease)},
			{file("etc/os-release", alpineOSRelease)},
		}, OS{ID: "alpine", VersionID: "3.16.9", PrettyName: "Alpine Linux v3.16", Ecosystem: "Alpine:v3.16"}, 1, "etc/os-release"},
		{"opaque directory hides the lower os-release", [][]entry{
			{file("etc/os-release", debianOSRelease)},
			{opaque("etc"), file("etc/hostname", "x")},
		}, OS{}, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var layers []v1.Layer
			for _, es := range tc.layers {
				raw := tarBytes(t, es...)
				layers = append(layers, newCountingLayer(t, raw, raw, types.OCILayer))
			}
			inv, st, err := New().scan(context.Background(), image(t, layers...))
			if err != nil {
				t.Fatal(err)
			}
			if inv.OS != tc.want {
				t.Errorf("OS = %+v, want %+v", inv.OS, tc.want)
			}
			if n, size := keptContent(st); n > tc.maxKept {
				t.Errorf("%d files (%d bytes) kept in memory, want at most %d", n, size, tc.maxKept)
			}
			if tc.keptPath != "" {
				if e := st.entries[tc.keptPath]; e == nil || e.content == nil {
					t.Errorf("%s not kept", tc.keptPath)
				}
			}
		})
	}
}

// A whiteout is remembered only when it deletes something a lower layer
// left: a flood of them for paths nothing had costs no memory.
func TestWhiteoutFloodIsNotKept(t *testing.T) {
	t.Parallel()
	st := newFSState()
	st.put("var/lib/dpkg/status", &pathEntry{layer: 0, pkgs: []found{{pkg: Package{Name: "bash", Version: "5"}}}}, nil)
	es := []entry{whiteout("var/lib/dpkg/status"), opaque("var/lib"), opaque("nothing/here")}
	for i := range 20_000 {
		es = append(es, whiteout(fmt.Sprintf("d%d/f%d", i%100, i)))
	}
	raw := tarBytes(t, es...)
	s := New()
	w := &layerWalker{s: s, st: st, budget: &scanBudget{entries: s.maxImageEntries, readBytes: s.maxReadBytes}, index: 1, changes: newLayerChanges()}
	if err := w.walk(context.Background(), bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	if len(w.changes.gone) != 1 || len(w.changes.opaque) != 1 {
		t.Errorf("kept %d whiteouts and %d opaque markers, want 1 and 1", len(w.changes.gone), len(w.changes.opaque))
	}
	st.applyChanges(1, w.changes)
	if len(st.entries) != 0 || st.packageCount != 0 {
		t.Errorf("after the whiteouts: %d entries, %d packages, want none", len(st.entries), st.packageCount)
	}
}

// sparseEntry is a PAX (format 1.0) sparse executable of realSize bytes of
// which only the first ones, data, are stored; archive/tar cannot write one.
func sparseEntry(name string, realSize int64, data string) []byte {
	rec := func(k, v string) string {
		n := len(k) + len(v) + 3
		n += len(fmt.Sprint(n))
		if len(fmt.Sprint(n)) > len(fmt.Sprint(n-len(fmt.Sprint(n)))) {
			n++
		}
		return fmt.Sprintf("%d %s=%s\n", n, k, v)
	}
	header := func(name string, typ byte, size int) []byte {
		h := make([]byte, 512)
		copy(h, name)
		copy(h[100:], "0000755\x00")
		copy(h[124:], fmt.Sprintf("%011o\x00", size))
		copy(h[136:], "00000000000\x00")
		h[156] = typ
		copy(h[257:], "ustar\x0000")
		copy(h[148:156], "        ")
		sum := 0
		for _, c := range h {
			sum += int(c)
		}
		copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
		return h
	}
	pad := func(b []byte) []byte { return append(b, make([]byte, (512-len(b)%512)%512)...) }
	pax := rec("GNU.sparse.major", "1") + rec("GNU.sparse.minor", "0") + rec("GNU.sparse.name", name) + rec("GNU.sparse.realsize", fmt.Sprint(realSize))
	var b []byte
	b = append(b, header("PaxHeaders/x", 'x', len(pax))...)
	b = append(b, pad([]byte(pax))...)
	b = append(b, header("GNUSparseFile.0/x", '0', 512+len(data))...)
	b = append(b, pad(fmt.Appendf(nil, "1\n0\n%d\n", len(data)))...)
	b = append(b, pad([]byte(data))...)
	return b
}

// tarEnd closes a hand-made tar stream.
var tarEnd = make([]byte, 1024)

// jarOf builds a zip archive; a member whose body is a []byte is stored,
// a string is deflated.
func jarOf(t testing.TB, members ...any) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for i := 0; i < len(members); i += 2 {
		name := members[i].(string)
		var err error
		var w io.Writer
		switch body := members[i+1].(type) {
		case []byte:
			if w, err = zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Store}); err == nil {
				_, err = w.Write(body)
			}
		case string:
			if w, err = zw.Create(name); err == nil {
				_, err = io.WriteString(w, body)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// nestedJar nests a jar with one pom.properties depth levels deep.
func nestedJar(t testing.TB, depth int) []byte {
	jar := jarOf(t, "META-INF/maven/g/a/pom.properties", "groupId=g\nartifactId=a\nversion=1\n")
	for range depth - 1 {
		jar = jarOf(t, "lib/inner.jar", jar)
	}
	return jar
}

func dpkgStatus(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "Package: p%d\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.%d\n\n", i, i)
	}
	return b.String()
}

func npmPackages(n int) []entry {
	var es []entry
	for i := range n {
		es = append(es, file(fmt.Sprintf("app/node_modules/p%d/package.json", i), fmt.Sprintf(`{"name":"p%d","version":"1.0.%d"}`, i, i)))
	}
	return es
}

// Every bound of a scan stops it with an error that wraps ErrLimitExceeded
// and names the bound and the path; the defaults stop the hostile images of
// the issue.
func TestScanBounds(t *testing.T) {
	t.Parallel()
	manifestBomb := jarOf(t, "META-INF/MANIFEST.MF", strings.Repeat("X-A: b\n", (maxArchiveMetadataSize/7)+1))
	manyEntries := func(n int) []byte {
		var ms []any
		for i := range n {
			ms = append(ms, fmt.Sprint(i), []byte{})
		}
		return jarOf(t, ms...)
	}
	overlapping := func() []byte {
		// A stored nested jar padded to 64 KiB.
		return jarOf(t, "lib/a.jar", append(nestedJar(t, 1), make([]byte, 64<<10)...))
	}
	tests := []struct {
		name   string
		layers [][]entry
		raw    []byte // a hand-made layer instead of layers
		opts   []Option
		want   []string // in the error
	}{
		{name: "tar entries of the image", layers: [][]entry{{file("a", ""), file("b", ""), file("c", "")}, {file("d", ""), file("e", ""), file("f", "")}},
			opts: []Option{WithMaxEntries(3), WithMaxImageEntries(5)}, want: []string{"WithMaxImageEntries", `"f"`, "layer 1"}},
		{name: "tar entries of a layer", layers: [][]entry{{file("a", ""), file("b", ""), file("c", ""), file("d", "")}},
			opts: []Option{WithMaxEntries(3)}, want: []string{"WithMaxEntries", `"d"`, "layer 0"}},
		{name: "bytes read into memory", layers: [][]entry{npmPackages(3)}, opts: []Option{WithMaxReadBytes(70)},
			want: []string{"WithMaxReadBytes", "/app/node_modules/p2/package.json"}},
		{name: "sparse files count at their full size", raw: append(append(sparseEntry("usr/bin/a", 3<<20, "\x7fELF"), sparseEntry("usr/bin/b", 3<<20, "\x7fELF")...), tarEnd...),
			opts: []Option{WithMaxReadBytes(5 << 20)}, want: []string{"WithMaxReadBytes", "/usr/bin/b"}},
		{name: "a 200,000-package dpkg status, by default", layers: [][]entry{{file("var/lib/dpkg/status", dpkgStatus(200_000))}},
			want: []string{"WithMaxPackages", "/var/lib/dpkg/status", "200000 package records"}},
		{name: "packages across files", layers: [][]entry{npmPackages(4), npmPackages(8)[4:]}, opts: []Option{WithMaxPackages(6)},
			want: []string{"WithMaxPackages", "layer 1", "/app/node_modules/p6/package.json"}},
		{name: "packages of a database with those found before", layers: [][]entry{append(npmPackages(3), file("var/lib/dpkg/status", dpkgStatus(4)))},
			opts: []Option{WithMaxPackages(6)}, want: []string{"WithMaxPackages", "4 package records (3 packages found before)"}},
		{name: "inventory bytes", layers: [][]entry{npmPackages(5)}, opts: []Option{WithMaxInventoryBytes(200)},
			want: []string{"WithMaxInventoryBytes", "package.json"}},
		{name: "package database size", layers: [][]entry{{file("lib/apk/db/installed", "P:musl\nV:1.2.3-r3\n\n"+strings.Repeat("#", 2000))}},
			opts: []Option{WithMaxPackageDBSize(1024)}, want: []string{"WithMaxPackageDBSize", "/lib/apk/db/installed"}},
		{name: "archive nesting, by default", layers: [][]entry{{file("app/deep.jar", string(nestedJar(t, 9)))}},
			want: []string{"WithMaxArchive", "nesting depth", "/app/deep.jar!/lib/inner.jar!/lib/inner.jar"}},
		{name: "archive nesting", layers: [][]entry{{file("app/deep.jar", string(nestedJar(t, 3)))}},
			opts: []Option{WithMaxArchive(2, 0, 0)}, want: []string{"WithMaxArchive", "nesting depth"}},
		{name: "manifest bomb, by default", layers: [][]entry{{file("app/bomb.jar", string(manifestBomb))}},
			want: []string{"maxArchiveMetadataSize", "/app/bomb.jar!/META-INF/MANIFEST.MF"}},
		{name: "archive entries", layers: [][]entry{{file("app/many.jar", string(manyEntries(100)))}},
			opts: []Option{WithMaxArchive(0, 50, 0)}, want: []string{"WithMaxArchive", "entries", "/app/many.jar"}},
		{name: "archive bytes", layers: [][]entry{{file("app/big.jar", string(overlapping()))}},
			opts: []Option{WithMaxArchive(0, 0, 100<<10)}, want: []string{"WithMaxArchive", "bytes opened", "/app/big.jar!/lib/a.jar"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ls []v1.Layer
			if tc.raw != nil {
				ls = append(ls, newCountingLayer(t, tc.raw, tc.raw, types.OCILayer))
			}
			for _, es := range tc.layers {
				raw := tarBytes(t, es...)
				ls = append(ls, newCountingLayer(t, raw, raw, types.OCILayer))
			}
			_, err := New(tc.opts...).Scan(context.Background(), image(t, ls...))
			if !errors.Is(err, ErrLimitExceeded) {
				t.Fatalf("err = %v, want %v", err, ErrLimitExceeded)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// Under the bounds nothing changes: a real-sized image scans as before, and
// a metadata file above its size limit is skipped and logged, not fatal.
func TestWithinBounds(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	es := append(npmPackages(3), file("app/node_modules/big/package.json", `{"name":"big","version":"1.0.0","description":"`+strings.Repeat("a", 4096)+`"}`),
		file("var/lib/dpkg/status", dpkgStatus(3000)), file("app/lib/ok.jar", string(nestedJar(t, 3))))
	inv := scan(t, image(t, gzLayer(t, es...)), WithMaxMetadataSize(1024), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if len(inv.Packages) != 3+3000+1 {
		t.Errorf("%d packages, want %d", len(inv.Packages), 3+3000+1)
	}
	if !strings.Contains(logs.String(), "/app/node_modules/big/package.json") {
		t.Errorf("no log line for the skipped package.json:\n%s", logs.String())
	}
}

// countingHandler counts log records whose message contains substr and
// calls onCount with the running count.
type countingHandler struct {
	substr  string
	n       atomic.Int64
	onCount func(int64)
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.substr) {
		h.onCount(h.n.Add(1))
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

// lazyGzipLayer generates a gzip layer of n identical tar entries while it
// is read, so a million-entry layer costs only what the scan consumes.
func lazyGzipLayer(t *testing.T, n int, e entry) *lazyLayer {
	t.Helper()
	one := tarBytes(t, e)
	one = one[:len(one)-1024] // without the end-of-archive blocks
	return &lazyLayer{countingLayer: newCountingLayer(t, nil, nil, types.OCILayer), gen: func(w io.Writer) error {
		zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
		if err != nil {
			return err
		}
		for range n {
			if _, err := zw.Write(one); err != nil {
				return err
			}
		}
		if _, err := zw.Write(tarEnd); err != nil {
			return err
		}
		return zw.Close()
	}}
}

type lazyLayer struct {
	*countingLayer
	gen func(io.Writer) error
}

func (l *lazyLayer) Compressed() (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(l.gen(pw)) }()
	return fullReads{pr}, nil // the scanner closes it, which ends the generator
}

// fullReads fills every read, as a file or a busy connection does, rather
// than handing out each small write of the generator on its own.
type fullReads struct{ *io.PipeReader }

func (r fullReads) Read(p []byte) (int, error) {
	n, err := io.ReadFull(r.PipeReader, p)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = nil
	}
	return n, err
}

// A cancelled scan stops within a few hundred entries even when the
// compressed stream hands out a hundred thousand of them per read (where
// the context was the only thing checked before).
func TestCancelledScanStopsInsideALayer(t *testing.T) {
	t.Parallel()
	const cancelAt = 1000
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := &countingHandler{substr: "extractor failed", onCount: func(n int64) {
		if n == cancelAt {
			cancel()
		}
	}}
	// An unparsable package.json: the npm extractor fails and logs each one.
	l := lazyGzipLayer(t, 1_000_000, file("app/node_modules/x/package.json", "x"))
	_, err := New(WithLogger(slog.New(h))).Scan(ctx, image(t, l))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	t.Logf("%d entries read after the cancel", h.n.Load()-cancelAt)
	if n := h.n.Load(); n > cancelAt+ctxCheckEvery {
		t.Errorf("%d entries read after the scan was cancelled at entry %d, want at most %d", n-cancelAt, cancelAt, ctxCheckEvery)
	}
}
