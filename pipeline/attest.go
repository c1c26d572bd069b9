package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/cosign/v2/pkg/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"

	"github.com/portcullis/portcullis/signing"
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

// signedStatement is an attestation signed as an in-toto statement in a
// DSSE envelope, the way `cosign attest --key` does.
type signedStatement struct {
	predicateType string
	statement     []byte
	envelope      []byte
}

// attest signs each predicate as a statement about repo@imageDigest and
// publishes it in both of cosign's formats, since cosign reads only one
// per image: the legacy tag sha256-<hex>.att (returned with the digest of
// its image) and sigstore bundles as referrers (returned as referrer
// descriptors; the proxy lists them only where the upstream attaches
// bundles itself). No transparency log: verifiers use the proxy's key with
// --insecure-ignore-tlog. Content of both joins contents.
func attest(signer signature.Signer, repo string, subject descriptor, atts []attestation, now time.Time, contents map[string]store.Content) (tag, attDigest string, bundles []json.RawMessage, err error) {
	hex, ok := strings.CutPrefix(subject.Digest, "sha256:")
	if !ok {
		return "", "", nil, fmt.Errorf("image digest %s is not sha256", subject.Digest)
	}
	envelopeSigner := dsse.WrapSigner(signer, types.IntotoPayloadType)
	var signed []signedStatement
	for _, a := range atts {
		statement, err := json.Marshal(inTotoStatement{
			Type:          inTotoStatementType,
			PredicateType: a.predicateType,
			Subject:       []inTotoSubject{{Name: repo, Digest: map[string]string{"sha256": hex}}},
			Predicate:     a.predicate,
		})
		if err != nil {
			return "", "", nil, fmt.Errorf("statement %s: %w", a.predicateType, err)
		}
		envelope, err := envelopeSigner.SignMessage(bytes.NewReader(statement))
		if err != nil {
			return "", "", nil, fmt.Errorf("sign statement %s: %w", a.predicateType, err)
		}
		signed = append(signed, signedStatement{a.predicateType, statement, envelope})
	}
	if attDigest, err = attestationImage(signed, contents); err != nil {
		return "", "", nil, fmt.Errorf("attestation image: %w", err)
	}
	if bundles, err = attestationBundles(signer, signed, subject, now, contents); err != nil {
		return "", "", nil, fmt.Errorf("attestation bundles: %w", err)
	}
	tag, err = cosignTag(subject.Digest, ".att")
	return tag, attDigest, bundles, err
}

// attestationImage builds the image cosign reads from the .att tag: one
// DSSE envelope per layer, annotated with its predicate type.
func attestationImage(signed []signedStatement, contents map[string]store.Content) (string, error) {
	var sigs []oci.Signature
	for _, s := range signed {
		sig, err := static.NewAttestation(s.envelope, static.WithLayerMediaType(types.DssePayloadType),
			static.WithAnnotations(map[string]string{"predicateType": s.predicateType}))
		if err != nil {
			return "", err
		}
		sigs = append(sigs, sig)
	}
	return signatureImage(contents, sigs...)
}

// attestationBundles wraps each envelope in a sigstore bundle naming the
// proxy's key, as an OCI 1.1 referrer of the image annotated the way
// cosign's own are.
func attestationBundles(signer signature.Signer, signed []signedStatement, subject descriptor, now time.Time, contents map[string]store.Content) ([]json.RawMessage, error) {
	pub, err := signer.PublicKey()
	if err != nil {
		return nil, err
	}
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, err
	}
	var descs []json.RawMessage
	for _, s := range signed {
		b, err := cbundle.MakeNewBundle(pub, nil, s.statement, s.envelope, pubPEM, nil)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", s.predicateType, err)
		}
		desc, _, err := artifactManifest(signing.BundleArtifactType, b, subject, now, contents, map[string]string{
			"dev.sigstore.bundle.content":       "dsse-envelope",
			"dev.sigstore.bundle.predicateType": s.predicateType,
		})
		if err != nil {
			return nil, err
		}
		descs = append(descs, desc)
	}
	return descs, nil
}
