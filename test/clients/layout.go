package clients

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// LayoutRoot returns the descriptor an OCI image layout directory (what
// skopeo's oci: and crane's --format oci write) lists under tag, or its
// only entry when tag is "".
func LayoutRoot(t testing.TB, dir, tag string) v1.Descriptor {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("read OCI layout %s: %v", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatalf("read OCI layout %s: %v", dir, err)
	}
	for _, d := range im.Manifests {
		if tag == "" && len(im.Manifests) == 1 || tag != "" && d.Annotations["org.opencontainers.image.ref.name"] == tag {
			return d
		}
	}
	t.Fatalf("OCI layout %s has no single manifest tagged %q: %+v", dir, tag, im.Manifests)
	return v1.Descriptor{}
}
