package scanner

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const alpineArchive = "../../shared/testdata/images/alpine-3.16.9.tar"

// The real Alpine 3.16.9 image gives exactly its apk inventory.
func TestAlpineImage(t *testing.T) {
	t.Parallel()
	img, err := ImageFromArchive(alpineArchive)
	if err != nil {
		t.Fatal(err)
	}
	inv := scan(t, img)

	// The same manifest digest go-containerregistry (and so "crane push")
	// gives the archive, so a scan of the archive and of the pushed image
	// name the same image.
	ref, err := tarball.ImageFromPath(alpineArchive, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := ref.Digest(); inv.ImageDigest != d.String() {
		t.Errorf("image digest = %s, want %s", inv.ImageDigest, d)
	}
	const layer = "sha256:74d6fbf7d0717457233b445ef1ae59a86c471f5f70fd53de78ebe34424aae3c0"
	wantOS := OS{ID: "alpine", VersionID: "3.16.9", PrettyName: "Alpine Linux v3.16", Ecosystem: "Alpine:v3.16"}
	if inv.OS != wantOS {
		t.Errorf("OS = %+v, want %+v", inv.OS, wantOS)
	}
	if len(inv.Layers) != 1 || inv.Layers[0].Digest != layer || inv.Layers[0].Size != 2722681 {
		t.Errorf("layers = %+v", inv.Layers)
	}
	var got []string
	byName := map[string]Package{}
	for _, p := range inv.Packages {
		got = append(got, p.Name+" "+p.Version)
		byName[p.Name] = p
	}
	want := []string{
		"alpine-baselayout 3.2.0-r23", "alpine-baselayout-data 3.2.0-r23", "alpine-keys 2.4-r1", "apk-tools 2.12.9-r3",
		"busybox 1.35.0-r17", "ca-certificates-bundle 20230506-r0", "libc-utils 0.7.2-r3", "libcrypto1.1 1.1.1w-r1",
		"libssl1.1 1.1.1w-r1", "musl 1.2.3-r3", "musl-utils 1.2.3-r3", "scanelf 1.3.4-r0", "ssl_client 1.35.0-r17", "zlib 1.2.12-r3",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("packages (-want +got):\n%s", diff)
	}
	wantPkgs := []Package{
		{Name: "busybox", Version: "1.35.0-r17", Ecosystem: "Alpine:v3.16", Type: "apk", Location: "/lib/apk/db/installed",
			PURL: "pkg:apk/alpine/busybox@1.35.0-r17?arch=x86_64&distro=alpine-3.16.9", Layer: layer},
		// ssl_client is built from busybox: its origin is the source package
		// the Alpine advisories name.
		{Name: "ssl_client", Version: "1.35.0-r17", Ecosystem: "Alpine:v3.16", SourceName: "busybox", Type: "apk", Location: "/lib/apk/db/installed",
			PURL: "pkg:apk/alpine/ssl_client@1.35.0-r17?arch=x86_64&distro=alpine-3.16.9&upstream=busybox", Layer: layer},
	}
	diffPackages(t, wantPkgs, []Package{byName["busybox"], byName["ssl_client"]})
}

// A docker-archive (uncompressed layers, one linked to another entry, as
// old "docker save" writes them) and an OCI layout tarball (with a nested
// index) give the same inventory as the image itself.
func TestArchives(t *testing.T) {
	t.Parallel()
	raw0 := tarBytes(t, file("etc/os-release", alpineOSRelease), file("lib/apk/db/installed", fixture(t, "apk/installed")))
	raw1 := tarBytes(t, whiteout("lib/apk/db/installed"), file("app/node_modules/lodash/package.json", fixture(t, "npm/lodash-4.17.20/package.json")))
	img := image(t, newCountingLayer(t, gzipBytes(t, raw0), raw0, "application/vnd.oci.image.layer.v1.tar+gzip"),
		newCountingLayer(t, zstdBytes(t, raw1), raw1, "application/vnd.oci.image.layer.v1.tar+zstd"))
	want := scan(t, img)
	if len(want.Packages) != 1 || want.Packages[0].Name != "lodash" || want.OS.ID != "alpine" {
		t.Fatalf("reference scan = %+v", want)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}

	dockerSave := writeTar(t, []entry{
		file("manifest.json", `[{"Config":"cfg.json","RepoTags":["x:1"],"Layers":["aaa/layer.tar","bbb/layer.tar"]}]`),
		file("cfg.json", string(cfg)),
		file("aaa/layer.tar", string(raw0)),
		file("real/layer1.tar", string(raw1)),
		symlink("bbb/layer.tar", "../real/layer1.tar"),
	})
	crane := filepath.Join(t.TempDir(), "crane.tar")
	if err := tarball.WriteToFile(crane, nil, img); err != nil {
		t.Fatal(err)
	}
	ociDir := t.TempDir()
	p, err := layout.Write(ociDir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: img})); err != nil {
		t.Fatal(err)
	}
	ociTar := writeTar(t, dirEntries(t, ociDir))

	for name, archive := range map[string]string{"docker save": dockerSave, "crane/ggcr tarball": crane, "OCI layout": ociTar} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			img, err := ImageFromArchive(archive)
			if err != nil {
				t.Fatal(err)
			}
			got := scan(t, img)
			if got.OS != want.OS {
				t.Errorf("OS = %+v, want %+v", got.OS, want.OS)
			}
			diffPackages(t, want.Packages, got.Packages, ignoreLayer)
			if len(got.Layers) != 2 {
				t.Fatalf("layers = %+v", got.Layers)
			}
			for i := range got.Layers {
				if got.Layers[i].DiffID != want.Layers[i].DiffID {
					t.Errorf("layer %d diff id = %s, want %s", i, got.Layers[i].DiffID, want.Layers[i].DiffID)
				}
			}
			if name == "OCI layout" && got.ImageDigest != want.ImageDigest {
				t.Errorf("image digest = %s, want %s (the manifest as stored)", got.ImageDigest, want.ImageDigest)
			}
		})
	}
}

func TestArchiveErrors(t *testing.T) {
	t.Parallel()
	for name, entries := range map[string][]entry{
		"empty archive":          {},
		"no manifest":            {file("hello.txt", "hi")},
		"manifest lists nothing": {file("manifest.json", "[]")},
		"missing layer":          {file("manifest.json", `[{"Config":"c.json","Layers":["l.tar"]}]`), file("c.json", `{"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}`)},
		"diff ids do not match":  {file("manifest.json", `[{"Config":"c.json","Layers":["l.tar"]}]`), file("c.json", `{"rootfs":{"type":"layers","diff_ids":[]}}`), file("l.tar", "")},
		"index without images":   {file("index.json", `{"schemaVersion":2,"manifests":[]}`)},
		"symlink loop":           {symlink("manifest.json", "manifest.json")},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := ImageFromArchive(writeTar(t, entries)); err == nil {
				t.Error("ImageFromArchive succeeded, want an error")
			}
		})
	}
	if _, err := ImageFromArchive(filepath.Join(t.TempDir(), "missing.tar")); err == nil {
		t.Error("missing file: want an error")
	}
}

func writeTar(t testing.TB, entries []entry) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "archive.tar")
	if err := os.WriteFile(f, tarBytes(t, entries...), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// dirEntries lists a directory's files as tar entries.
func dirEntries(t *testing.T, root string) []entry {
	t.Helper()
	var out []entry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, file(filepath.ToSlash(rel), string(b)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
