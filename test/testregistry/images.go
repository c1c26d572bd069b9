package testregistry

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"io"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// foreignURL is where ForeignLayerImage says its foreign layer lives: port 1
// on loopback, so anything that tries to fetch it fails fast and visibly.
const foreignURL = "http://127.0.0.1:1/never"

// RandomImage builds a linux/amd64 image in memory with `layers` gzip tar
// layers, each holding one file of layerSize random bytes, so every call gives
// new digests. manifestType is types.DockerManifestSchema2 or
// types.OCIManifestSchema1; layer and config media types follow it.
func RandomImage(t testing.TB, layers int, layerSize int64, manifestType types.MediaType) v1.Image {
	t.Helper()
	return randomImage(t, layers, layerSize, manifestType, v1.Platform{OS: "linux", Architecture: "amd64"})
}

func randomImage(t testing.TB, layers int, layerSize int64, manifestType types.MediaType, p v1.Platform) v1.Image {
	t.Helper()
	var layerType, configType types.MediaType
	switch manifestType {
	case types.DockerManifestSchema2:
		layerType, configType = types.DockerLayer, types.DockerConfigJSON
	case types.OCIManifestSchema1:
		layerType, configType = types.OCILayer, types.OCIConfigJSON
	default:
		t.Fatalf("testregistry: RandomImage: manifest type %q is neither Docker schema2 nor OCI", manifestType)
	}
	img := platformBase(t, p)
	for i := range layers {
		var err error
		img, err = mutate.AppendLayers(img, gzipTarLayer(t, layerSize, layerType))
		if err != nil {
			t.Fatalf("testregistry: append layer %d: %v", i, err)
		}
	}
	return mutate.ConfigMediaType(mutate.MediaType(img, manifestType), configType)
}

// platformBase is an empty image whose config names the platform. It must be
// set before layers are appended: replacing the config afterwards would drop
// rootfs.diff_ids, and image scanners would then silently see no layers.
func platformBase(t testing.TB, p v1.Platform) v1.Image {
	t.Helper()
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Created:      v1.Time{Time: time.Now().UTC().Truncate(time.Second)},
		OS:           p.OS,
		Architecture: p.Architecture,
		Variant:      p.Variant,
		OSVersion:    p.OSVersion,
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		t.Fatalf("testregistry: config for %s: %v", p, err)
	}
	return img
}

// gzipTarLayer compresses once up front; tarball then recognises the gzip
// stream and serves it as is instead of recompressing on every read.
func gzipTarLayer(t testing.TB, size int64, mt types.MediaType) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     "random.bin",
		Mode:     0o644,
		Size:     size,
		ModTime:  time.Unix(0, 0),
	})
	if err == nil {
		_, err = io.CopyN(tw, rand.Reader, size)
	}
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		t.Fatalf("testregistry: build layer: %v", err)
	}
	raw := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(mt))
	if err != nil {
		t.Fatalf("testregistry: layer: %v", err)
	}
	return l
}

// MultiArchIndex builds an index with one small RandomImage per platform
// ("os/arch" or "os/arch/variant"), each config naming its platform. indexType
// is types.DockerManifestList (Docker schema2 children) or types.OCIImageIndex
// (OCI children).
func MultiArchIndex(t testing.TB, indexType types.MediaType, platforms ...string) v1.ImageIndex {
	t.Helper()
	var childType types.MediaType
	switch indexType {
	case types.DockerManifestList:
		childType = types.DockerManifestSchema2
	case types.OCIImageIndex:
		childType = types.OCIManifestSchema1
	default:
		t.Fatalf("testregistry: MultiArchIndex: index type %q is neither a Docker list nor an OCI index", indexType)
	}
	adds := make([]mutate.IndexAddendum, 0, len(platforms))
	for _, s := range platforms {
		p, err := v1.ParsePlatform(s)
		if err != nil {
			t.Fatalf("testregistry: platform %q: %v", s, err)
		}
		adds = append(adds, mutate.IndexAddendum{
			Add:        randomImage(t, 1, 1024, childType, *p),
			Descriptor: v1.Descriptor{Platform: p},
		})
	}
	return mutate.IndexMediaType(mutate.AppendManifests(empty.Index, adds...), indexType)
}

// Artifact builds an OCI 1.1 artifact manifest referring to subject. Its
// config media type is artifactType, which is where ggcr's registry (and the
// fallback-tag writer) read artifactType from; its one layer is payload, with
// the same media type.
func Artifact(t testing.TB, subject v1.Descriptor, artifactType string, payload []byte) v1.Image {
	t.Helper()
	mt := types.MediaType(artifactType)
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), mt)
	img, err := mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(payload, mt)})
	if err != nil {
		t.Fatalf("testregistry: artifact: %v", err)
	}
	out, ok := mutate.Subject(img, subject).(v1.Image)
	if !ok {
		t.Fatalf("testregistry: artifact with subject is not an image")
	}
	return out
}

// ForeignLayerImage builds a Docker schema2 image whose first layer is
// foreign (types.DockerForeignLayer, urls pointing at a closed loopback port)
// and whose second layer is normal. Pushers skip foreign layers, so the
// registry never holds that blob; a proxy must not try to fetch it either.
func ForeignLayerImage(t testing.TB) v1.Image {
	t.Helper()
	img, err := mutate.Append(platformBase(t, v1.Platform{OS: "linux", Architecture: "amd64"}),
		mutate.Addendum{Layer: gzipTarLayer(t, 1024, types.DockerForeignLayer), URLs: []string{foreignURL}},
		mutate.Addendum{Layer: gzipTarLayer(t, 1024, types.DockerLayer)},
	)
	if err != nil {
		t.Fatalf("testregistry: foreign layer image: %v", err)
	}
	return mutate.ConfigMediaType(mutate.MediaType(img, types.DockerManifestSchema2), types.DockerConfigJSON)
}
