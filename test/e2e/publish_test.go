package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"

	"github.com/portcullis/portcullis/pipeline"
)

// After evaluation the verdict and the SBOM are published as OCI referrers
// of the image, served by the mirror like any content.
func TestVerdictAndSBOMArePublishedAsReferrers(t *testing.T) {
	pc, d, _ := gateSetup(t, strings.Replace(blockingPolicy, "mode: enforce", "mode: warn", 1))
	if r := do(t, "GET", pc.URL+"/v2/library/alpine/manifests/3.16.9"); r.status != 200 {
		t.Fatalf("pull: %d", r.status)
	}
	awaitPublished(t, pc.URL, "library/alpine", d, false)
	r := do(t, "GET", pc.URL+"/v2/library/alpine/referrers/"+d)
	var idx v1.IndexManifest
	if r.status != 200 || json.Unmarshal(r.body, &idx) != nil {
		t.Fatalf("referrers: %d %s", r.status, r.body)
	}
	byType := map[string]v1.Descriptor{}
	for _, m := range idx.Manifests {
		byType[m.ArtifactType] = m
	}
	verdict, ok := byType["application/vnd.portcullis.verdict.v1+json"]
	if !ok || byType["application/vnd.cyclonedx+json"].Digest.Hex == "" {
		t.Fatalf("published referrers: %s", r.body)
	}
	// The artifact manifest and its layer come back by digest.
	m := do(t, "GET", pc.URL+"/v2/library/alpine/manifests/"+verdict.Digest.String())
	var man v1.Manifest
	if m.status != 200 || json.Unmarshal(m.body, &man) != nil || sha(m.body) != verdict.Digest.String() {
		t.Fatalf("verdict manifest: %d %s", m.status, m.body)
	}
	if man.Subject == nil || man.Subject.Digest.String() != d || len(man.Layers) != 1 {
		t.Fatalf("verdict manifest: %+v", man)
	}
	b := do(t, "GET", pc.URL+"/v2/library/alpine/blobs/"+man.Layers[0].Digest.String())
	var doc struct {
		Digest   string `json:"digest"`
		Decision struct {
			Effective string `json:"effective"`
			Reasons   []struct {
				Code string `json:"code"`
			} `json:"reasons"`
		} `json:"decision"`
	}
	if b.status != 200 || json.Unmarshal(b.body, &doc) != nil || doc.Digest != d || doc.Decision.Effective != "warn" || doc.Decision.Reasons[0].Code != "VULNERABLE" {
		t.Fatalf("verdict document: %d %s", b.status, b.body)
	}
	// The artifactType filter applies to published referrers too.
	r = do(t, "GET", pc.URL+"/v2/library/alpine/referrers/"+d+"?artifactType=application/vnd.cyclonedx%2Bjson")
	if err := json.Unmarshal(r.body, &idx); err != nil || len(idx.Manifests) != 1 || idx.Manifests[0].ArtifactType != "application/vnd.cyclonedx+json" {
		t.Fatalf("filtered: %s", r.body)
	}
}

// With a signing key configured, each published artifact carries a cosign
// signature that cosign's own verification accepts through the mirror.
func TestPublishedArtifactsAreSigned(t *testing.T) {
	cfg, publicPEM := signingKey(t)
	pc, d, _ := gateSetup(t, strings.Replace(blockingPolicy, "mode: enforce", "mode: warn", 1), cfg...)
	if r := do(t, "GET", pc.URL+"/v2/library/alpine/manifests/3.16.9"); r.status != 200 {
		t.Fatalf("pull: %d", r.status)
	}
	awaitPublished(t, pc.URL, "library/alpine", d, true)
	var idx v1.IndexManifest
	if err := json.Unmarshal(do(t, "GET", pc.URL+"/v2/library/alpine/referrers/"+d).body, &idx); err != nil || len(idx.Manifests) != 2 {
		t.Fatalf("referrers: %+v %v", idx, err)
	}
	verifier := verifierFromPEM(t, publicPEM)
	for _, m := range idx.Manifests {
		ref, err := name.NewDigest(strings.TrimPrefix(pc.URL, "http://") + "/library/alpine@" + m.Digest.String())
		if err != nil {
			t.Fatal(err)
		}
		sigs, _, err := cosign.VerifyImageSignatures(t.Context(), ref, &cosign.CheckOpts{
			SigVerifier: verifier, ClaimVerifier: cosign.SimpleClaimVerifier, IgnoreTlog: true, Offline: true,
		})
		if err != nil || len(sigs) != 1 {
			t.Fatalf("%s (%s): %d signatures, %v", m.ArtifactType, m.Digest, len(sigs), err)
		}
	}
}

// awaitPublished waits until the verdict on manifest in repo is published
// (its referrers list the verdict; with signed, the attestation tag is
// there too): publication runs in its own workers, after the verdict.
func awaitPublished(t *testing.T, pcURL, repo, manifest string, signed bool) {
	t.Helper()
	attTag := "sha256-" + strings.TrimPrefix(manifest, "sha256:") + ".att"
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var idx v1.IndexManifest
		r := do(t, "GET", pcURL+"/v2/"+repo+"/referrers/"+manifest)
		listed := r.status == 200 && json.Unmarshal(r.body, &idx) == nil &&
			slices.ContainsFunc(idx.Manifests, func(m v1.Descriptor) bool { return m.ArtifactType == pipeline.VerdictArtifactType })
		if listed && (!signed || do(t, "HEAD", pcURL+"/v2/"+repo+"/manifests/"+attTag).status == 200) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("verdict on %s/%s not published: referrers %d %s", repo, manifest, r.status, r.body)
		}
	}
}
