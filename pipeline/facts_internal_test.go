package pipeline

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// The platform the list and detail pages show comes from the image config.
func TestImageFactsPlatform(t *testing.T) {
	for _, c := range []struct {
		os, arch, variant string
		want              string
	}{
		{"linux", "amd64", "", "linux/amd64"},
		{"linux", "arm64", "v8", "linux/arm64/v8"},
		{"", "", "", ""},
	} {
		img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: c.os, Architecture: c.arch, Variant: c.variant})
		if err != nil {
			t.Fatal(err)
		}
		f, err := readImageFacts(img)
		if err != nil || f.Platform != c.want {
			t.Errorf("%s/%s/%s: platform %q, %v; want %q", c.os, c.arch, c.variant, f.Platform, err, c.want)
		}
	}
}
