package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/store"
)

// Artifact types of what Portcullis publishes as referrers of an image.
const (
	VerdictArtifactType = "application/vnd.portcullis.verdict.v1+json"
	SBOMArtifactType    = "application/vnd.cyclonedx+json"
	ociManifestType     = "application/vnd.oci.image.manifest.v1+json"
	ociEmptyType        = "application/vnd.oci.empty.v1+json"
)

// verdictDocument is the published verdict: what an admission controller
// needs to decide offline.
type verdictDocument struct {
	Image         string          `json:"image"`
	Digest        string          `json:"digest"`
	Decision      policy.Decision `json:"decision"`
	DBVersion     string          `json:"dbVersion,omitempty"`
	ScannerVer    string          `json:"scannerVersion,omitempty"`
	EvaluatedAt   time.Time       `json:"evaluatedAt"`
	Vulnerability int             `json:"vulnerabilities"`
}

// publishArtifacts replaces the verdict and SBOM referrers of a scanned
// image in the repository dec was made for: verdicts differ per
// repository, so what is published does too.
func (p *Pipeline) publishArtifacts(ctx context.Context, rec store.ScanRecord, dec store.DecisionRecord, d policy.Decision) error {
	if p.o.Artifacts == nil || rec.State != store.ScanDone {
		return nil
	}
	f := rec.Facts
	if f == nil || f.ManifestMediaType == "" {
		return nil // an artifact, or a record from before subjects were kept
	}
	if rec.Inventory == nil {
		// Trying again cannot help: the next scan of it brings one.
		p.log.Warn("nothing to publish: the stored result has no inventory", "image", dec.Upstream+"/"+dec.Repository+"@"+rec.Digest)
		return nil
	}
	verdict, err := json.Marshal(verdictDocument{Image: dec.Upstream + "/" + dec.Repository, Digest: rec.Digest, Decision: d,
		DBVersion: rec.DBVersion, ScannerVer: rec.ScannerVersion, EvaluatedAt: p.now().UTC(), Vulnerability: len(rec.Findings)})
	if err != nil {
		return err
	}
	var sbom bytes.Buffer
	if err := scanner.WriteCycloneDX(&sbom, rec.Inventory, rec.Findings); err != nil {
		return fmt.Errorf("sbom: %w", err)
	}
	subject := descriptor{MediaType: f.ManifestMediaType, Digest: rec.Digest, Size: f.ManifestSize}
	contents := map[string]store.Content{}
	var descs []json.RawMessage
	localTags := map[string]string{}
	for _, a := range []struct {
		artifactType string
		body         []byte
	}{{VerdictArtifactType, verdict}, {SBOMArtifactType, sbom.Bytes()}} {
		desc, md, err := artifactManifest(a.artifactType, a.body, subject, p.now(), contents, nil)
		if err != nil {
			return err
		}
		descs = append(descs, desc)
		if p.o.Signer != nil {
			tag, sigDigest, err := signArtifact(p.o.Signer, dec.Upstream+"/"+dec.Repository, md, contents)
			if err != nil {
				return fmt.Errorf("sign %s: %w", a.artifactType, err)
			}
			localTags[tag] = sigDigest
		}
	}
	if p.o.Signer != nil {
		tag, attDigest, bundles, err := attest(p.o.Signer, dec.Upstream+"/"+dec.Repository, subject,
			[]attestation{{VerdictPredicateType, verdict}, {SBOMPredicateType, sbom.Bytes()}}, p.now(), contents)
		if err != nil {
			return fmt.Errorf("attest %s: %w", rec.Digest, err)
		}
		localTags[tag] = attDigest
		descs = append(descs, bundles...)
	}
	// The attestation image is content of this subject's set, so the next
	// publication replaces it.
	if err := p.o.Artifacts.PutReferrers(ctx, store.SubjectKey(dec.Upstream, dec.Repository, rec.Digest), descs, contents); err != nil {
		return err
	}
	for tag, d := range localTags {
		if err := p.o.Artifacts.PutLocalTag(ctx, store.LocalTagKey(dec.Upstream, dec.Repository, tag), d); err != nil {
			return err
		}
	}
	return nil
}

type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// artifactManifest builds an OCI 1.1 artifact manifest (empty config, one
// layer, a subject), adds its content to contents and returns its
// descriptor as the referrers API lists it:
// https://github.com/opencontainers/image-spec/blob/main/manifest.md#guidelines-for-artifact-usage
func artifactManifest(artifactType string, body []byte, subject descriptor, now time.Time, contents map[string]store.Content, extra map[string]string) (json.RawMessage, string, error) {
	empty := []byte("{}")
	layer := descriptor{MediaType: artifactType, Digest: digest.FromBytes(body).String(), Size: int64(len(body))}
	annotations := map[string]string{"org.opencontainers.image.created": now.UTC().Format(time.RFC3339)}
	maps.Copy(annotations, extra)
	m, err := json.Marshal(struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		ArtifactType  string            `json:"artifactType"`
		Config        descriptor        `json:"config"`
		Layers        []descriptor      `json:"layers"`
		Subject       descriptor        `json:"subject"`
		Annotations   map[string]string `json:"annotations"`
	}{2, ociManifestType, artifactType, descriptor{MediaType: ociEmptyType, Digest: digest.FromBytes(empty).String(), Size: 2},
		[]descriptor{layer}, subject, annotations})
	if err != nil {
		return nil, "", err
	}
	md := digest.FromBytes(m).String()
	contents[digest.FromBytes(empty).String()] = store.Content{MediaType: ociEmptyType, Body: empty}
	contents[layer.Digest] = store.Content{MediaType: artifactType, Body: body}
	contents[md] = store.Content{MediaType: ociManifestType, Body: m}
	desc, err := json.Marshal(descriptor{MediaType: ociManifestType, Digest: md, Size: int64(len(m)), ArtifactType: artifactType, Annotations: annotations})
	return desc, md, err
}
