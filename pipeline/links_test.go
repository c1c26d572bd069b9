package pipeline

import (
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestManifestRefs(t *testing.T) {
	d1, d2 := digest.FromString("1").String(), digest.FromString("2").String()
	for _, tc := range []struct {
		name           string
		body           string
		blobs, indexes int
		tooMany        bool
		err            bool
	}{
		{"image", `{"config":{"digest":"` + d1 + `","size":5},"layers":[{"digest":"` + d2 + `","size":7}]}`, 2, 0, false, false},
		{"index", `{"manifests":[{"digest":"` + d1 + `"},{"digest":"` + d2 + `"}]}`, 0, 2, false, false},
		{"invalid digests are skipped", `{"config":{"digest":"sha256:nope"},"layers":[{"digest":"../../etc"}]}`, 0, 0, false, false},
		{"not JSON", `<html>`, 0, 0, false, true},
		{"too many layers", `{"layers":[` + strings.Repeat(`{"digest":"`+d1+`"},`, maxBlobsPerManifest) + `{"digest":"` + d2 + `"}]}`, 0, 0, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blobs, children, err := manifestRefs([]byte(tc.body))
			var tooMany *tooManyBlobsError
			if (err != nil) != tc.err || errors.As(err, &tooMany) != tc.tooMany {
				t.Fatalf("err %v", err)
			}
			if len(blobs) != tc.blobs || len(children) != tc.indexes {
				t.Fatalf("blobs %v children %v", blobs, children)
			}
		})
	}
}

// FuzzManifestRefs: whatever a registry sends, the relations written are
// bounded and name only valid digests, with sizes a client could serve.
func FuzzManifestRefs(f *testing.F) {
	d := digest.FromString("x").String()
	f.Add([]byte(`{"config":{"digest":"` + d + `","size":5},"layers":[{"digest":"` + d + `","size":-3}]}`))
	f.Add([]byte(`{"manifests":[{"digest":"` + d + `"}]}`))
	f.Add([]byte(`{"layers":null,"config":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		blobs, children, err := manifestRefs(body)
		if err != nil {
			return
		}
		if len(blobs)+len(children) > maxBlobsPerManifest {
			t.Fatalf("%d relations", len(blobs)+len(children))
		}
		for _, b := range blobs {
			if _, err := digest.Parse(b.Digest); err != nil || b.Size < -1 {
				t.Fatalf("blob %+v", b)
			}
		}
		for _, c := range children {
			if _, err := digest.Parse(c); err != nil {
				t.Fatalf("child %q", c)
			}
		}
	})
}
