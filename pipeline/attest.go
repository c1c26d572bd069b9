package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/cosign/v2/pkg/types"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"

	"github.com/portcullis/portcullis/store"
)

// Predicate types of the in-toto attestations Portcullis publishes. The
// SBOM's is CycloneDX's own, so `cosign verify-attestation --type
// cyclonedx` finds it.
const (
	VerdictPredicateType = "https://portcullis.dev/attestation/verdict/v1"
	SBOMPredicateType    = "https://cyclonedx.org/bom"
	inTotoStatementType  = "https://in-toto.io/Statement/v0.1"
)

type inTotoSubject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

type inTotoStatement struct {
	Type          string          `json:"_type"`
	PredicateType string          `json:"predicateType"`
	Subject       []inTotoSubject `json:"subject"`
	Predicate     json.RawMessage `json:"predicate"`
}

type attestation struct {
	predicateType string
	predicate     []byte // JSON
}

// attestImage signs each predicate as an in-toto statement about
// repo@imageDigest in a DSSE envelope, the way `cosign attest --key` does
// without a transparency log, and builds the image cosign reads from the
// tag sha256-<hex>.att. Its content joins contents; it returns the tag and
// the attestation image's digest. The proxy serves that tag merged with
// the upstream's own attestations, so `cosign verify-attestation --key`
// through the mirror sees both.
func attestImage(signer signature.Signer, repo, imageDigest string, atts []attestation, contents map[string]store.Content) (string, string, error) {
	hex, ok := strings.CutPrefix(imageDigest, "sha256:")
	if !ok {
		return "", "", fmt.Errorf("image digest %s is not sha256", imageDigest)
	}
	envelopeSigner := dsse.WrapSigner(signer, types.IntotoPayloadType)
	var sigs []oci.Signature
	for _, a := range atts {
		statement, err := json.Marshal(inTotoStatement{
			Type:          inTotoStatementType,
			PredicateType: a.predicateType,
			Subject:       []inTotoSubject{{Name: repo, Digest: map[string]string{"sha256": hex}}},
			Predicate:     a.predicate,
		})
		if err != nil {
			return "", "", fmt.Errorf("statement %s: %w", a.predicateType, err)
		}
		envelope, err := envelopeSigner.SignMessage(bytes.NewReader(statement))
		if err != nil {
			return "", "", fmt.Errorf("sign statement %s: %w", a.predicateType, err)
		}
		sig, err := static.NewAttestation(envelope, static.WithLayerMediaType(types.DssePayloadType),
			static.WithAnnotations(map[string]string{"predicateType": a.predicateType}))
		if err != nil {
			return "", "", err
		}
		sigs = append(sigs, sig)
	}
	d, err := signatureImage(contents, sigs...)
	if err != nil {
		return "", "", fmt.Errorf("attestation image: %w", err)
	}
	tag, err := cosignTag(imageDigest, ".att")
	return tag, d, err
}
