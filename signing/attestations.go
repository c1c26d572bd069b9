package signing

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore-go/pkg/verify"
)

// Predicate is the predicate of an in-toto attestation whose signature
// verified, and who signed it.
type Predicate struct {
	Type   string
	Body   json.RawMessage
	Signer Signer
}

// statement is the part of an in-toto statement read here; the subject is
// checked by cosign's claim verifier (tag) or sigstore-go's artifact
// policy (bundle), never here.
type statement struct {
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// VerifiedPredicates finds the in-toto attestations of repo@digest whose
// predicate type is one of predicateTypes, in both of cosign's formats
// (the .att tag, sigstore bundle referrers), and returns the predicates of
// those that verify against trust and name digest as their subject. The
// Result says what was found: unsigned when there is no such attestation
// at all, invalid when some exist and none verifies (Error says why),
// error when they could not be read.
func VerifiedPredicates(ctx context.Context, reg Registry, repo, digest string, trust Trust, predicateTypes []string) ([]Predicate, Result) {
	if err := checkDigest(digest); err != nil {
		return nil, Result{State: StateError, Error: err.Error()}
	}
	ts, err := compileTrust(trust)
	if err != nil {
		return nil, Result{State: StateError, Error: err.Error()}
	}
	accept := func(t string) bool { return slices.Contains(predicateTypes, t) }
	tagPreds, tag := verifyAttestationTag(ctx, reg, repo, digest, ts, accept)
	bundlePreds, bundles := verifyAttestationBundles(ctx, reg, repo, digest, ts, accept)
	res := Merge(tag, bundles)
	return append(tagPreds, bundlePreds...), res
}

func verifyAttestationTag(ctx context.Context, reg Registry, repo, digest string, ts trustSet, accept func(string) bool) ([]Predicate, Result) {
	sigs, truncated, err := fetchTagImage(ctx, reg, repo, digest, ociremote.AttestationTag)
	if err != nil {
		return nil, Result{State: StateError, Error: fmt.Sprintf("%s attestation: %v", FormatCosignTag, err)}
	}
	h, err := v1.NewHash(digest)
	if err != nil {
		return nil, Result{State: StateError, Error: err.Error()}
	}
	var out []Predicate
	var signers []Signer
	var reasons []string
	found := 0
	for i, sig := range sigs {
		if sig.err != nil {
			reasons = append(reasons, fmt.Sprintf("attestation %d: %v", i+1, sig.err))
			found++
			continue
		}
		payload, err := sig.sig.Payload()
		if err != nil {
			reasons = append(reasons, fmt.Sprintf("attestation %d: %v", i+1, err))
			found++
			continue
		}
		st, err := envelopeStatement(payload)
		if err != nil {
			reasons = append(reasons, fmt.Sprintf("attestation %d: %v", i+1, err))
			found++
			continue
		}
		if !accept(st.PredicateType) {
			continue // another predicate: not what was asked for
		}
		found++
		signer, why := verifyTagAttestation(ctx, sig, h, ts)
		if signer == nil {
			reasons = append(reasons, fmt.Sprintf("attestation %d: %s", i+1, why))
			continue
		}
		signers = appendSigners(signers, *signer)
		out = append(out, Predicate{Type: st.PredicateType, Body: st.Predicate, Signer: *signer})
	}
	return attestationResult(out, signers, found, truncated, reasons, FormatCosignTag, "attestations")
}

// verifyTagAttestation checks one DSSE envelope of the .att image with
// each verifier, binding it to the image by the statement's subject.
func verifyTagAttestation(ctx context.Context, sig tagSignature, h v1.Hash, ts trustSet) (*Signer, string) {
	if ts.requireTlog {
		if b, err := sig.sig.Bundle(); err != nil || b == nil {
			return nil, "no transparency-log entry (Rekor bundle) attached, and one is required"
		}
	}
	var why []string
	for _, v := range ts.verifiers {
		opts := v.opts
		opts.ClaimVerifier = cosign.IntotoSubjectClaimVerifier
		if _, err := cosign.VerifyBlobAttestation(ctx, sig.sig, h, &opts); err != nil {
			why = append(why, v.desc+": "+err.Error())
			continue
		}
		s, problem := tagSigner(v, sig.sig)
		if s == nil {
			why = append(why, problem)
			continue
		}
		return s, ""
	}
	mostSpecificFirst(why)
	return nil, strings.Join(why, "; ")
}

func verifyAttestationBundles(ctx context.Context, reg Registry, repo, digest string, ts trustSet, accept func(string) bool) ([]Predicate, Result) {
	found, truncated, err := fetchBundlesOf(ctx, reg, repo, digest, accept)
	if err != nil {
		return nil, Result{State: StateError, Error: fmt.Sprintf("%s attestation: %v", FormatBundle, err)}
	}
	raw, err := hex.DecodeString(strings.TrimPrefix(digest, "sha256:"))
	if err != nil {
		return nil, Result{State: StateError, Error: err.Error()}
	}
	policy := verify.WithArtifactDigest("sha256", raw)
	var out []Predicate
	var signers []Signer
	var reasons []string
	n := 0
	for _, f := range found {
		if f.err != nil {
			n++
			reasons = append(reasons, fmt.Sprintf("referrer %s: %v", f.manifest, f.err))
			continue
		}
		env := f.bundle.GetDsseEnvelope()
		if env == nil {
			continue // a message signature, not an attestation
		}
		n++
		var st statement
		if err := json.Unmarshal(env.GetPayload(), &st); err != nil {
			reasons = append(reasons, fmt.Sprintf("referrer %s: parse statement: %v", f.manifest, err))
			continue
		}
		signer, why := verifyBundle(ctx, f.bundle, policy, ts)
		if signer == nil {
			reasons = append(reasons, fmt.Sprintf("referrer %s: %s", f.manifest, why))
			continue
		}
		signers = appendSigners(signers, *signer)
		out = append(out, Predicate{Type: st.PredicateType, Body: st.Predicate, Signer: *signer})
	}
	return attestationResult(out, signers, n, truncated, reasons, FormatBundle, "bundles")
}

// envelopeStatement reads the in-toto statement out of a DSSE envelope
// (the layer content of cosign's .att image).
func envelopeStatement(envelope []byte) (statement, error) {
	var env struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
	}
	if err := json.Unmarshal(envelope, &env); err != nil {
		return statement{}, fmt.Errorf("parse DSSE envelope: %w", err)
	}
	body, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return statement{}, fmt.Errorf("DSSE payload: %w", err)
	}
	var st statement
	if err := json.Unmarshal(body, &st); err != nil {
		return statement{}, fmt.Errorf("parse in-toto statement: %w", err)
	}
	return st, nil
}

// attestationResult sums up the attestations of one format: verified when
// any verified, unsigned when none was found, else invalid with why each
// failed (units names what was counted, past maxSignatures).
func attestationResult(out []Predicate, signers []Signer, found int, truncated bool, reasons []string, format, units string) ([]Predicate, Result) {
	switch {
	case len(out) > 0:
		return out, Result{State: StateVerified, Signers: signers}
	case found == 0:
		return nil, Result{State: StateUnsigned}
	}
	if truncated {
		reasons = append([]string{fmt.Sprintf("only the first %d %s were checked", maxSignatures, units)}, reasons...)
	}
	return nil, Result{State: StateInvalid, Error: describeFailures(format+" attestation", reasons)}
}
