package scanner

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// names lists "name@version (layer N)" for each package, for compact
// expectations in the layering tests.
func names(pkgs []Package) []string {
	out := []string{}
	for _, p := range pkgs {
		out = append(out, p.Name+"@"+p.Version+" ("+strconv.Itoa(p.LayerIndex)+")")
	}
	return out
}

// statusWithout returns the dpkg status fixture without one package.
func statusWithout(t *testing.T, pkg string) string {
	var keep []string
	for _, para := range strings.Split(fixture(t, "dpkg/status"), "\n\n") {
		if !strings.HasPrefix(para, "Package: "+pkg+"\n") {
			keep = append(keep, para)
		}
	}
	return strings.Join(keep, "\n\n")
}

func TestLayers(t *testing.T) {
	t.Parallel()
	status := fixture(t, "dpkg/status")
	lodash := fixture(t, "npm/lodash-4.17.20/package.json")
	minimist := fixture(t, "npm/minimist-1.2.5/package.json")
	once := fixture(t, "npm/tootallnate-once-1.1.2/package.json")
	gcc := "Package: libgcc-s1\nStatus: install ok installed\n" +
		strings.TrimPrefix(fixture(t, "dpkg/status.d/libgcc-s1"), "Package: libgcc-s1\n")
	dpkgAll := []string{"base-files@12.4+deb12u11 (0)", "bash@5.2.15-2+b8 (0)", "libcap2@1:2.66-4+deb12u2+b2 (0)",
		"libssl3@3.0.19-1~deb12u2 (0)", "tzdata@2025b-0+deb12u2 (0)", "zlib1g@1:1.2.13.dfsg-1 (0)"}

	tests := []struct {
		name   string
		layers [][]entry
		want   []string
	}{
		{
			name: "whiteout removes a package directory",
			layers: [][]entry{
				{file("app/node_modules/lodash/package.json", lodash), file("app/node_modules/minimist/package.json", minimist)},
				{whiteout("app/node_modules/lodash")},
			},
			want: []string{"minimist@1.2.5 (0)"},
		},
		{
			name: "whiteout of a parent directory removes everything below",
			layers: [][]entry{
				{file("app/node_modules/lodash/package.json", lodash), file("usr/lib/node_modules/minimist/package.json", minimist)},
				{whiteout("app")},
			},
			want: []string{"minimist@1.2.5 (0)"},
		},
		{
			name: "whiteout of the dpkg status removes all its packages",
			layers: [][]entry{
				{file("var/lib/dpkg/status", status), file("app/node_modules/lodash/package.json", lodash)},
				{whiteout("var/lib/dpkg/status")},
			},
			want: []string{"lodash@4.17.20 (0)"},
		},
		{
			name: "opaque directory hides the lower layers, keeps its own layer",
			layers: [][]entry{
				{file("app/node_modules/lodash/package.json", lodash), file("app/node_modules/minimist/package.json", minimist)},
				{dir("app/node_modules"), opaque("app/node_modules"), file("app/node_modules/@tootallnate/once/package.json", once)},
			},
			want: []string{"@tootallnate/once@1.1.2 (1)"},
		},
		{
			name: "opaque directory written before its contents in the same layer",
			layers: [][]entry{
				{file("app/node_modules/lodash/package.json", lodash)},
				{file("app/node_modules/minimist/package.json", minimist), opaque("app/node_modules")},
			},
			want: []string{"minimist@1.2.5 (1)"},
		},
		{
			name: "overwritten status is re-read; unchanged packages keep the layer that introduced them",
			layers: [][]entry{
				{file("var/lib/dpkg/status", status)},
				{file("var/lib/dpkg/status", statusWithout(t, "tzdata")+"\n\n"+gcc)},
			},
			want: []string{"base-files@12.4+deb12u11 (0)", "bash@5.2.15-2+b8 (0)", "libcap2@1:2.66-4+deb12u2+b2 (0)",
				"libgcc-s1@12.2.0-14+deb12u1 (1)", "libssl3@3.0.19-1~deb12u2 (0)", "zlib1g@1:1.2.13.dfsg-1 (0)"},
		},
		{
			name: "a package removed and installed again belongs to the later layer",
			layers: [][]entry{
				{file("app/node_modules/lodash/package.json", lodash)},
				{whiteout("app/node_modules/lodash")},
				{file("app/node_modules/lodash/package.json", lodash)},
			},
			want: []string{"lodash@4.17.20 (2)"},
		},
		{
			name: "a file replacing a directory drops what was below it",
			layers: [][]entry{
				{file("app/node_modules/lodash/package.json", lodash), file("var/lib/dpkg/status", status)},
				{file("app/node_modules", "not a directory any more")},
			},
			want: dpkgAll,
		},
		{
			name: "a directory replacing a package database drops it",
			layers: [][]entry{
				{file("var/lib/dpkg/status", status), file("app/node_modules/lodash/package.json", lodash)},
				{dir("var/lib/dpkg/status")},
			},
			want: []string{"lodash@4.17.20 (0)"},
		},
		{
			name: "a database replaced by a symlink is not followed",
			layers: [][]entry{
				{file("var/lib/dpkg/status", status)},
				{symlink("var/lib/dpkg/status", "/etc/passwd")},
			},
			want: []string{},
		},
		{
			name: "tar names with ./ and / prefixes",
			layers: [][]entry{
				{file("./var/lib/dpkg/status", status), file("/app/node_modules/lodash/package.json", lodash)},
			},
			want: append([]string{"lodash@4.17.20 (0)"}, dpkgAll...),
		},
		{
			name: "names climbing out of the root stay inside it",
			layers: [][]entry{
				{file("../../../var/lib/dpkg/status", status), file("app/../../node_modules/lodash/package.json", lodash)},
			},
			want: append([]string{"lodash@4.17.20 (0)"}, dpkgAll...),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var layers []v1.Layer
			for _, entries := range tc.layers {
				layers = append(layers, gzLayer(t, entries...))
			}
			inv := scan(t, image(t, layers...))
			// Scans that start from stored layer states find the same.
			checkCachedScans(t, inv, layers)
			got := names(inv.Packages)
			slices.Sort(got)
			slices.Sort(tc.want)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("packages:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestCleanPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"etc/os-release":       "etc/os-release",
		"./etc/os-release":     "etc/os-release",
		"/etc/os-release":      "etc/os-release",
		"../../etc/os-release": "etc/os-release",
		"a/b/../../../c":       "c",
		"a//b/./c/":            "a/b/c",
		".":                    "",
		"/":                    "",
		"..":                   "",
		"etc/\\..\\passwd":     "etc/\\..\\passwd", // backslashes are just bytes
	} {
		if got, ok := cleanPath(in); !ok || got != want {
			t.Errorf("cleanPath(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	// archive/tar never returns a name with a NUL, but the walker does not
	// rely on that.
	if _, ok := cleanPath("etc/os-release\x00.txt"); ok {
		t.Error("cleanPath accepted a NUL byte")
	}
}

// The layer digest recorded for a package is the compressed digest of the
// layer that introduced it.
func TestLayerAttribution(t *testing.T) {
	t.Parallel()
	l0 := gzLayer(t, file("var/lib/dpkg/status", statusWithout(t, "tzdata")))
	l1 := gzLayer(t, file("etc/hostname", "x\n"))
	l2 := gzLayer(t, file("var/lib/dpkg/status", fixture(t, "dpkg/status")))
	inv := scan(t, image(t, l0, l1, l2))
	if len(inv.Layers) != 3 {
		t.Fatalf("layers = %d, want 3", len(inv.Layers))
	}
	for i, l := range []v1.Layer{l0, l1, l2} {
		if inv.Layers[i].Digest != digestOf(t, l) {
			t.Errorf("layer %d digest = %s, want %s", i, inv.Layers[i].Digest, digestOf(t, l))
		}
		if inv.Layers[i].MediaType != string(types.DockerLayer) || inv.Layers[i].DiffID == "" || inv.Layers[i].Size == 0 {
			t.Errorf("layer %d = %+v", i, inv.Layers[i])
		}
	}
	for _, p := range inv.Packages {
		want := 0
		if p.Name == "tzdata" {
			want = 2
		}
		if p.LayerIndex != want || p.Layer != inv.Layers[want].Digest {
			t.Errorf("%s: layer %d %s, want %d %s", p.Name, p.LayerIndex, p.Layer, want, inv.Layers[want].Digest)
		}
	}
}

// gzip, zstd and plain tar layers are recognised by their bytes, whatever
// the media type says, and each layer is read exactly once through
// Compressed().
func TestCompressions(t *testing.T) {
	t.Parallel()
	raw := tarBytes(t, file("app/node_modules/lodash/package.json", fixture(t, "npm/lodash-4.17.20/package.json")))
	tests := []struct {
		name       string
		compressed []byte
		mediaType  types.MediaType
	}{
		{"gzip", gzipBytes(t, raw), types.OCILayer},
		{"zstd", zstdBytes(t, raw), types.OCILayerZStd},
		{"uncompressed", raw, types.OCIUncompressedLayer},
		{"uncompressed labelled gzip", raw, types.DockerLayer},
		{"zstd labelled gzip", zstdBytes(t, raw), types.DockerLayer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newCountingLayer(t, tc.compressed, raw, tc.mediaType)
			inv := scan(t, image(t, l))
			if got := names(inv.Packages); len(got) != 1 || got[0] != "lodash@4.17.20 (0)" {
				t.Errorf("packages = %v", got)
			}
			if n := l.reads.Load(); n != 1 {
				t.Errorf("Compressed() called %d times, want 1", n)
			}
		})
	}
}

// An image like the proxy's: go-containerregistry's partial package over
// compressed blobs whose layers do not know their diff ID. Asking such a
// layer for DiffID decompresses it, so the scanner must take diff IDs from
// the config and still read each blob exactly once.
func TestCompressedOnlyImage(t *testing.T) {
	t.Parallel()
	raw := tarBytes(t, file("app/node_modules/lodash/package.json", fixture(t, "npm/lodash-4.17.20/package.json")))
	ref := image(t, newCountingLayer(t, gzipBytes(t, raw), raw, types.OCILayer))
	core := &compressedCore{t: t, ref: ref, layer: newCountingLayer(t, gzipBytes(t, raw), raw, types.OCILayer)}
	img, err := partial.CompressedToImage(core)
	if err != nil {
		t.Fatal(err)
	}
	inv := scan(t, img)
	if got := names(inv.Packages); len(got) != 1 || got[0] != "lodash@4.17.20 (0)" {
		t.Errorf("packages = %v", got)
	}
	if n := core.layer.reads.Load(); n != 1 {
		t.Errorf("blob read %d times, want 1", n)
	}
	if want := hashOf(raw).String(); inv.Layers[0].DiffID != want {
		t.Errorf("diff id = %s, want %s", inv.Layers[0].DiffID, want)
	}
}

// compressedCore serves ref's manifest and config, and one layer that only
// offers the compressed view (no DiffID, no Uncompressed).
type compressedCore struct {
	t     *testing.T
	ref   v1.Image
	layer *countingLayer
}

type compressedOnly struct{ l *countingLayer }

func (c compressedOnly) Digest() (v1.Hash, error)            { return c.l.Digest() }
func (c compressedOnly) Compressed() (io.ReadCloser, error)  { return c.l.Compressed() }
func (c compressedOnly) Size() (int64, error)                { return c.l.Size() }
func (c compressedOnly) MediaType() (types.MediaType, error) { return c.l.MediaType() }

func (c *compressedCore) RawConfigFile() ([]byte, error)      { return c.ref.RawConfigFile() }
func (c *compressedCore) MediaType() (types.MediaType, error) { return c.ref.MediaType() }
func (c *compressedCore) RawManifest() ([]byte, error)        { return c.ref.RawManifest() }
func (c *compressedCore) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if d, _ := c.layer.Digest(); d == h {
		return compressedOnly{c.layer}, nil
	}
	return partial.ConfigLayer(c)
}

// Symlinks resolve inside the image: an absolute target starts at the image
// root and ".." stops there, so nothing of the host (a Debian machine, as it
// happens) can leak into the result.
func TestSymlinksStayInsideTheImage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		entries []entry
		wantID  string
	}{
		{"relative link climbing out resolves to itself and is dropped",
			[]entry{symlink("etc/os-release", "../../../../../../etc/os-release")}, ""},
		{"absolute link to a file the image lacks",
			[]entry{symlink("etc/os-release", "/usr/lib/os-release")}, ""},
		{"absolute link with .. lands inside the image",
			[]entry{symlink("etc/os-release", "/../../../usr/lib/os-release"), file("usr/lib/os-release", alpineOSRelease)}, "alpine"},
		{"symlinked directory above the file",
			[]entry{symlink("etc", "usr/etc"), file("usr/etc/os-release", alpineOSRelease)}, "alpine"},
		{"symlink loop",
			[]entry{symlink("etc/os-release", "a"), symlink("etc/a", "os-release"), symlink("usr/lib/os-release", "/etc/os-release")}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inv := scan(t, image(t, gzLayer(t, tc.entries...)))
			if inv.OS.ID != tc.wantID {
				t.Errorf("OS = %+v, want ID %q", inv.OS, tc.wantID)
			}
		})
	}
}

// A file at one of the osFiles paths that a symlink of another osFiles
// path points to must also be kept when it comes first in its layer.
func TestOSFilesHaveKnownNames(t *testing.T) {
	t.Parallel()
	for p := range osFiles {
		if !isOSFileCandidate(p) {
			t.Errorf("%s is in osFiles but its name is not in osFileNames", p)
		}
	}
}

func TestOSDetection(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		entries []entry
		want    OS
	}{
		{"alpine-release only", []entry{file("etc/alpine-release", "3.18.4\n")},
			OS{ID: "alpine", VersionID: "3.18.4", Ecosystem: "Alpine:v3.18"}},
		{"alpine edge", []entry{file("etc/os-release", "ID=alpine\nVERSION_ID=3.21.0_alpha20240807\n")},
			OS{ID: "alpine", VersionID: "3.21.0_alpha20240807", Ecosystem: "Alpine:v3.21"}},
		{"debian_version only", []entry{file("etc/debian_version", "11.9\n")},
			OS{ID: "debian", VersionID: "11", Ecosystem: "Debian:11"}},
		{"debian testing", []entry{file("etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux trixie/sid\"\nID=debian\nVERSION_CODENAME=trixie\n"), file("etc/debian_version", "trixie/sid\n")},
			OS{ID: "debian", VersionID: "13", PrettyName: "Debian GNU/Linux trixie/sid", Ecosystem: "Debian:13"}},
		{"ubuntu", []entry{file("etc/os-release", "NAME=\"Ubuntu\"\nVERSION_ID=\"22.04\"\nID=ubuntu\nPRETTY_NAME='Ubuntu 22.04.4 LTS'\n")},
			OS{ID: "ubuntu", VersionID: "22.04", PrettyName: "Ubuntu 22.04.4 LTS", Ecosystem: "Ubuntu:22.04"}},
		{"rocky", []entry{file("usr/lib/os-release", "ID=\"rocky\"\nVERSION_ID=\"9.3\"\n")},
			OS{ID: "rocky", VersionID: "9.3", Ecosystem: "Rocky Linux:9"}},
		{"sles", []entry{file("etc/os-release", "ID=\"sles\"\nVERSION_ID=\"15.5\"\n")},
			OS{ID: "sles", VersionID: "15.5", Ecosystem: "SUSE:Linux Enterprise Server 15 SP5"}},
		{"later layer's os-release wins", []entry{file("etc/os-release", debianOSRelease), file("etc/os-release", alpineOSRelease)},
			OS{ID: "alpine", VersionID: "3.16.9", PrettyName: "Alpine Linux v3.16", Ecosystem: "Alpine:v3.16"}},
		{"no OS", []entry{file("app/main", "x")}, OS{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inv := scan(t, image(t, gzLayer(t, tc.entries...)))
			if inv.OS != tc.want {
				t.Errorf("OS = %+v, want %+v", inv.OS, tc.want)
			}
		})
	}
}

// Files above the size limit are skipped with a logged reason; the rest of
// the image is still scanned.
func TestMaxFileSize(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	img := image(t, gzLayer(t,
		file("var/lib/dpkg/status", fixture(t, "dpkg/status")),
		file("app/node_modules/lodash/package.json", fixture(t, "npm/lodash-4.17.20/package.json"))))
	inv := scan(t, img, WithMaxFileSize(1024), WithLogger(logger))
	if got := names(inv.Packages); len(got) != 1 || got[0] != "lodash@4.17.20 (0)" {
		t.Errorf("packages = %v, want lodash only", got)
	}
	if !strings.Contains(logs.String(), "skipping file larger than the limit") || !strings.Contains(logs.String(), "/var/lib/dpkg/status") {
		t.Errorf("no log line for the skipped file:\n%s", logs.String())
	}
}

// A layer that expands past the limit (a decompression bomb) fails the scan
// instead of running for ever.
func TestMaxLayerSize(t *testing.T) {
	t.Parallel()
	bomb := gzLayer(t, file("zeros", strings.Repeat("\x00", 1<<20)))
	_, err := New(WithMaxLayerSize(64<<10)).Scan(context.Background(), image(t, bomb))
	if !errors.Is(err, errLayerTooLarge) {
		t.Fatalf("err = %v, want %v", err, errLayerTooLarge)
	}
	_, err = New(WithMaxEntries(3)).Scan(context.Background(), image(t, gzLayer(t, file("a", ""), file("b", ""), file("c", ""), file("d", ""))))
	if err == nil || !strings.Contains(err.Error(), "tar entries") {
		t.Fatalf("err = %v, want too many entries", err)
	}
}

func TestCancelledScan(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := New().Scan(ctx, image(t, gzLayer(t, file("var/lib/dpkg/status", fixture(t, "dpkg/status")))))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestMalformedLayer(t *testing.T) {
	t.Parallel()
	for name, data := range map[string][]byte{
		"truncated gzip":  gzipBytes(t, tarBytes(t, file("a", "hello")))[:20],
		"not a tar":       bytes.Repeat([]byte("garbage!"), 200),
		"truncated entry": tarBytes(t, file("var/lib/dpkg/status", fixture(t, "dpkg/status")))[:1024],
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := New().Scan(context.Background(), image(t, newCountingLayer(t, data, data, types.OCILayer))); err == nil {
				t.Error("Scan succeeded, want an error")
			}
		})
	}
}
