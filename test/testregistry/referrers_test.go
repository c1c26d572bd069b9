package testregistry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// An artifact with an empty config and an artifactType field (how cosign
// attaches sigstore bundles) is listed with that artifactType, and the
// artifactType filter uses it.
func TestReferrersReportManifestArtifactType(t *testing.T) {
	const bundleType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	r := Start(t)
	subject := RandomImage(t, 1, 256, types.OCIManifestSchema1)
	sd := r.Push(t, "ref/app", "v1", subject)
	desc, err := partial.Descriptor(subject)
	if err != nil {
		t.Fatal(err)
	}
	repo := mustRef(t, r, "ref/app:v1").Context()
	config, layer := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json"), static.NewLayer([]byte(`{"bundle":1}`), bundleType)
	var descs []map[string]any
	for _, l := range []v1.Layer{config, layer} {
		if err := remote.WriteLayer(repo, l, clientOpts(t, authn.Anonymous)...); err != nil {
			t.Fatal(err)
		}
		d, _ := l.Digest()
		mt, _ := l.MediaType()
		size, _ := l.Size()
		descs = append(descs, map[string]any{"mediaType": mt, "digest": d.String(), "size": size})
	}
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "artifactType": bundleType,
		"config": descs[0], "layers": descs[1:],
		"subject": map[string]any{"mediaType": desc.MediaType, "digest": desc.Digest.String(), "size": desc.Size},
	})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, fmt.Sprintf("%s/v2/ref/app/manifests/bundle", r.URL()), bytes.NewReader(manifest))
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("put manifest: %v %v", resp, err)
	}
	resp.Body.Close()

	for _, tc := range []struct {
		query string
		want  int
	}{{"", 1}, {"?artifactType=" + url.QueryEscape(bundleType), 1}, {"?artifactType=application/vnd.oci.empty.v1%2Bjson", 0}} {
		resp, body := httpDo(t, http.MethodGet, r.URL()+"/v2/ref/app/referrers/"+sd.String()+tc.query, nil)
		var idx struct {
			Manifests []struct {
				ArtifactType string `json:"artifactType"`
			} `json:"manifests"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &idx) != nil || len(idx.Manifests) != tc.want {
			t.Fatalf("referrers%s: %d %s", tc.query, resp.StatusCode, body)
		}
		if tc.want == 1 && idx.Manifests[0].ArtifactType != bundleType {
			t.Errorf("referrers%s: artifactType %q, want %q", tc.query, idx.Manifests[0].ArtifactType, bundleType)
		}
		if filtered := resp.Header.Get("OCI-Filters-Applied") == "artifactType"; filtered != (tc.query != "") {
			t.Errorf("referrers%s: OCI-Filters-Applied %q", tc.query, resp.Header.Get("OCI-Filters-Applied"))
		}
	}
}
