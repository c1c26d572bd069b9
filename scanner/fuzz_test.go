package scanner

import (
	"bytes"
	"context"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/osv-scalibr/extractor/filesystem"
)

// fuzzLimits keep each fuzz input cheap: a bomb stops at 1 MiB of output.
var fuzzLimits = []Option{WithMaxLayerSize(1 << 20), WithMaxEntries(1000), WithMaxFileSize(256 << 10),
	WithMaxImageEntries(1500), WithMaxReadBytes(2 << 20), WithMaxPackages(500), WithMaxArchive(4, 2000, 512<<10)}

// checkInventory asserts what must hold for any input: every location is a
// clean absolute path inside the image.
func checkInventory(t *testing.T, inv *Inventory) {
	t.Helper()
	for _, p := range inv.Packages {
		if !strings.HasPrefix(p.Location, "/") || path.Clean(p.Location) != p.Location || strings.Contains(p.Location, "\x00") {
			t.Fatalf("location %q is not a clean image path", p.Location)
		}
		if p.LayerIndex < 0 || p.LayerIndex >= len(inv.Layers) || p.Layer != inv.Layers[p.LayerIndex].Digest {
			t.Fatalf("package %s attributed to layer %d %s", p.Name, p.LayerIndex, p.Layer)
		}
	}
}

// FuzzLayer feeds arbitrary bytes to the layer walker as the compressed
// form of a layer: malformed tars and compression, bombs, hostile names.
func FuzzLayer(f *testing.F) {
	status := readFixture(f, "dpkg/status")
	plain := tarBytes(f,
		file("etc/os-release", debianOSRelease),
		file("var/lib/dpkg/status", string(status)),
		file("app/node_modules/lodash/package.json", `{"name":"lodash","version":"4.17.20"}`),
		whiteout("app/node_modules/minimist"),
		opaque("srv"),
		symlink("etc/alpine-release", "../../../../etc/hostname"),
	)
	hostile := tarBytes(f,
		file("../../../../etc/os-release", alpineOSRelease),
		file("/abs/../../var/lib/dpkg/status", string(status)),
		symlink("usr/lib/os-release", "/proc/self/environ"),
		symlink("etc", "../../.."),
		entry{name: "dev/zero", typ: '3'},
	)
	links := tarBytes(f,
		file("usr/lib/os.release.d/os-release-x", alpineOSRelease),
		symlink("usr/lib/os-release", "os.release.d/os-release-x"),
		symlink("etc/os-release", "../usr/lib/os-release"),
		file("srv/os-release", debianOSRelease),
		whiteout("srv/os-release"),
		file("app/lib/a.jar", string(nestedJar(f, 3))),
	)
	f.Add(links)
	f.Add(append(sparseEntry("usr/bin/s", 1<<20, "\x7fELF"), tarEnd...))
	f.Add(plain)
	f.Add(gzipBytes(f, plain))
	f.Add(zstdBytes(f, plain))
	f.Add(gzipBytes(f, hostile))
	f.Add(gzipBytes(f, tarBytes(f, file("zeros", strings.Repeat("\x00", 4<<20))))) // expands past the limit
	f.Add(zstdBytes(f, bytes.Repeat([]byte{0}, 4<<20)))
	f.Add(plain[:700])
	f.Add([]byte{0x1f, 0x8b})
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd})
	f.Add([]byte{})
	s := New(fuzzLimits...)
	f.Fuzz(func(t *testing.T, data []byte) {
		l := newCountingLayer(t, data, data, types.OCILayer)
		inv, err := s.Scan(context.Background(), image(t, l))
		if l.reads.Load() != 1 {
			t.Fatalf("layer read %d times", l.reads.Load())
		}
		if err == nil {
			checkInventory(t, inv)
		}
	})
}

// FuzzImageFromArchive opens arbitrary bytes as an image archive and scans
// what it accepts.
func FuzzImageFromArchive(f *testing.F) {
	raw := tarBytes(f, file("lib/apk/db/installed", "P:musl\nV:1.2.3-r3\no:musl\n\n"))
	img := image(f, newCountingLayer(f, gzipBytes(f, raw), raw, types.OCILayer))
	cfg, err := img.RawConfigFile()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tarBytes(f,
		file("manifest.json", `[{"Config":"c.json","Layers":["l.tar"]}]`),
		file("c.json", string(cfg)),
		file("l.tar", string(raw)),
	))
	f.Add(tarBytes(f,
		file("manifest.json", `[{"Config":"c.json","Layers":["l.tar"]}]`),
		file("c.json", string(cfg)),
		symlink("l.tar", "../../etc/passwd"),
	))
	f.Add(tarBytes(f, file("index.json", `{"schemaVersion":2,"manifests":[{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"}]}`)))
	f.Add([]byte("not a tar"))
	dir := f.TempDir()
	s := New(fuzzLimits...)
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz.tar")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		img, err := ImageFromArchive(p)
		if err != nil {
			return
		}
		inv, err := s.Scan(context.Background(), img)
		if err == nil {
			checkInventory(t, inv)
		}
	})
}

// FuzzRPMDB reads arbitrary bytes as an rpm database (SQLite or Berkeley DB).
func FuzzRPMDB(f *testing.F) {
	f.Add(readFixture(f, "rpm/rpmdb.sqlite.gz"))
	f.Add(readFixture(f, "rpm/Packages-libuuid.gz"))
	f.Add([]byte(sqliteMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = extractRPMDB(context.Background(), &filesystem.ScanInput{Path: "var/lib/rpm/Packages", Reader: bytes.NewReader(data)})
		_, _ = parseRPMHeader(data)
	})
}
