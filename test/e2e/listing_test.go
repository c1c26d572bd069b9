package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"

	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

func TestTagsPagination(t *testing.T) {
	s := start(t)
	img := ociImage(t, 512)
	for _, tag := range []string{"b", "a", "d", "c", "e"} {
		s.up.Push(t, "team/app", tag, img)
	}
	var tags struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	var got []string
	next := "/v2/up.test/team/app/tags/list?n=2"
	for page := 0; next != "" && page < 10; page++ {
		r := do(t, "GET", s.pc.URL+next)
		if r.status != 200 {
			t.Fatalf("%s: %d %s", next, r.status, r.body)
		}
		if err := json.Unmarshal(r.body, &tags); err != nil {
			t.Fatal(err)
		}
		if tags.Name != "up.test/team/app" || len(tags.Tags) > 2 {
			t.Fatalf("page %d: %+v", page, tags)
		}
		got = append(got, tags.Tags...)
		next = ""
		if link := r.header.Get("Link"); link != "" {
			next = strings.TrimPrefix(strings.SplitN(link, ">", 2)[0], "<")
		}
	}
	if strings.Join(got, ",") != "a,b,c,d,e" {
		t.Fatalf("paginated tags %v, want a..e in order", got)
	}
	r := do(t, "GET", s.pc.URL+"/v2/team/app/tags/list?n=x")
	wantError(t, r, http.StatusBadRequest, "PAGINATION_NUMBER_INVALID")
	wantError(t, do(t, "GET", s.pc.URL+"/v2/team/nothing/tags/list"), http.StatusNotFound, "NAME_UNKNOWN")
}

// Referrers come from the upstream's API, or for an upstream without it
// from the sha256-<hex> tag schema; the artifactType filter works either way.
func TestReferrers(t *testing.T) {
	for _, api := range []bool{true, false} {
		name := "referrers API"
		if !api {
			name = "tag schema fallback"
		}
		t.Run(name, func(t *testing.T) {
			up := testregistry.Start(t, testregistry.WithReferrers(api))
			pc := harness.StartPortcullis(t, harness.BuildPortcullis(t), "--upstream", "up.test="+up.URL(), "--default-upstream", "up.test")
			img := ociImage(t, 512)
			subject := up.Push(t, "team/app", "1.0", img)
			desc, err := partial.Descriptor(img)
			if err != nil {
				t.Fatal(err)
			}
			sig := up.Push(t, "team/app", "", testregistry.Artifact(t, *desc, "application/vnd.example.sig", []byte("sig")))
			sbom := up.Push(t, "team/app", "", testregistry.Artifact(t, *desc, "application/spdx+json", []byte("{}")))
			if !api {
				// Old registries need the client to maintain the tag schema index.
				pushFallbackIndex(t, up, subject, sig, sbom)
			}
			list := func(query string) (v1.IndexManifest, response) {
				r := do(t, "GET", pc.URL+"/v2/team/app/referrers/"+subject.String()+query)
				var idx v1.IndexManifest
				if r.status != 200 {
					t.Fatalf("referrers%s: %d %s", query, r.status, r.body)
				}
				if ct := r.header.Get("Content-Type"); ct != "application/vnd.oci.image.index.v1+json" {
					t.Fatalf("Content-Type %q", ct)
				}
				if err := json.Unmarshal(r.body, &idx); err != nil {
					t.Fatal(err)
				}
				return idx, r
			}
			all, _ := list("")
			if len(all.Manifests) != 2 {
				t.Fatalf("referrers: %+v, want the 2 artifacts", all.Manifests)
			}
			only, r := list("?artifactType=application/spdx%2Bjson")
			if len(only.Manifests) != 1 || only.Manifests[0].Digest != sbom || r.header.Get("OCI-Filters-Applied") != "artifactType" {
				t.Fatalf("filtered referrers: %+v, header %q", only.Manifests, r.header.Get("OCI-Filters-Applied"))
			}
			none, _ := list("?artifactType=application/none")
			if len(none.Manifests) != 0 {
				t.Fatalf("filter matched %+v", none.Manifests)
			}
		})
	}
}
