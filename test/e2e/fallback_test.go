package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/portcullis/portcullis/test/testregistry"
)

// pushFallbackIndex writes the referrers tag schema index (sha256-<hex>) the
// way OCI 1.1 clients do for registries without the referrers API.
func pushFallbackIndex(t *testing.T, up *testregistry.Registry, subject v1.Hash, artifacts ...v1.Hash) {
	t.Helper()
	artifactTypes := []string{"application/vnd.example.sig", "application/spdx+json"}
	var manifests []v1.Descriptor
	for i, a := range artifacts {
		r := do(t, "GET", up.URL()+"/v2/team/app/manifests/"+a.String(), "Accept", "application/vnd.oci.image.manifest.v1+json")
		if r.status != 200 {
			t.Fatalf("artifact %s: %d", a, r.status)
		}
		manifests = append(manifests, v1.Descriptor{
			MediaType:    "application/vnd.oci.image.manifest.v1+json",
			Digest:       a,
			Size:         int64(len(r.body)),
			ArtifactType: artifactTypes[i],
		})
	}
	body, err := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json", Manifests: manifests})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("PUT", up.URL()+"/v2/team/app/manifests/sha256-"+subject.Hex, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/vnd.oci.image.index.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("push fallback index: %s", resp.Status)
	}
}
