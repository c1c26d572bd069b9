package scanner

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
)

// entry is one member of a test layer.
type entry struct {
	name string
	body string
	mode int64 // default 0644 (0755 for executables via exe)
	typ  byte  // default tar.TypeReg
	link string
}

func file(name, body string) entry       { return entry{name: name, body: body} }
func exe(name string, body []byte) entry { return entry{name: name, body: string(body), mode: 0o755} }
func dir(name string) entry              { return entry{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) entry  { return entry{name: name, typ: tar.TypeSymlink, link: target} }
func whiteout(name string) entry {
	return file(filepath.Join(filepath.Dir(name), ".wh."+filepath.Base(name)), "")
}
func opaque(dirName string) entry             { return file(filepath.Join(dirName, whiteoutOpaque), "") }
func fixture(t testing.TB, rel string) string { return string(readFixture(t, rel)) }

func readFixture(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", rel))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Ext(rel) == ".gz" {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// tarBytes builds an uncompressed layer tar.
func tarBytes(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, ModTime: time.Unix(0, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// gzLayer is a gzip layer as registries serve it, built the way the
// DEPENDENCIES pitfalls recommend (tarball.LayerFromOpener on compressed
// bytes, so digest and diff ID are both right).
func gzLayer(t testing.TB, entries ...entry) v1.Layer {
	t.Helper()
	gz := gzipBytes(t, tarBytes(t, entries...))
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(gz)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// countingLayer serves fixed bytes as the compressed form and counts how
// often it is read; Uncompressed fails the test, since the scanner must
// decompress by itself.
type countingLayer struct {
	t         testing.TB
	data      []byte
	diffID    v1.Hash
	mediaType types.MediaType
	reads     atomic.Int32
}

func newCountingLayer(t testing.TB, compressed, uncompressed []byte, mt types.MediaType) *countingLayer {
	return &countingLayer{t: t, data: compressed, diffID: hashOf(uncompressed), mediaType: mt}
}

func hashOf(b []byte) v1.Hash {
	s := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}

func (l *countingLayer) Digest() (v1.Hash, error)            { return hashOf(l.data), nil }
func (l *countingLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *countingLayer) Size() (int64, error)                { return int64(len(l.data)), nil }
func (l *countingLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l *countingLayer) Compressed() (io.ReadCloser, error) {
	l.reads.Add(1)
	return io.NopCloser(bytes.NewReader(l.data)), nil
}
func (l *countingLayer) Uncompressed() (io.ReadCloser, error) {
	l.t.Error("scanner called Uncompressed()")
	return io.NopCloser(bytes.NewReader(nil)), nil
}

// image stacks layers on an empty image; mutate.AppendLayers records each
// layer's diff ID in the config.
func image(t testing.TB, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func scan(t testing.TB, img v1.Image, opts ...Option) *Inventory {
	t.Helper()
	inv, err := New(opts...).Scan(context.Background(), img)
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return inv
}

// digestOf returns a layer's digest as the inventory records it.
func digestOf(t testing.TB, l v1.Layer) string {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// ignoreLayer compares packages without their layer digests, which change
// with every compression; tests that care check LayerIndex and Layer apart.
var ignoreLayer = cmpopts.IgnoreFields(Package{}, "Layer")

func diffPackages(t *testing.T, want, got []Package, opts ...cmp.Option) {
	t.Helper()
	if diff := cmp.Diff(want, got, append([]cmp.Option{cmpopts.EquateEmpty()}, opts...)...); diff != "" {
		t.Errorf("packages (-want +got):\n%s", diff)
	}
}

const debianOSRelease = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
`

const alpineOSRelease = `NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.16.9
PRETTY_NAME="Alpine Linux v3.16"
HOME_URL="https://alpinelinux.org/"
BUG_REPORT_URL="https://gitlab.alpinelinux.org/alpine/aports/-/issues"
`

// moduleDir downloads (through the module proxy, like any build) a module
// of our build list and returns its directory, for real test data that
// ships inside it.
func moduleDir(t *testing.T, path string) string {
	t.Helper()
	// The version the build uses, then a download of exactly it from
	// outside the module: run inside, `go mod download` would add the
	// module's sums to the checkout's go.sum.
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", path).Output()
	version := strings.TrimSpace(string(out))
	if err != nil || version == "" {
		t.Fatalf("go list -m %s: %v", path, err)
	}
	download := exec.Command("go", "mod", "download", "-json", path+"@"+version)
	download.Dir = t.TempDir()
	download.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
	out, err = download.Output()
	if err != nil {
		t.Fatalf("go mod download %s@%s: %v", path, version, err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		t.Fatalf("go mod download %s: no directory in %s", path, out)
	}
	return m.Dir
}
