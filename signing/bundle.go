package signing

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/types"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/verify"
)

// BundleArtifactType is the artifactType of referrers that carry a sigstore
// bundle, as cosign v3 (and v2 with --new-bundle-format) writes them.
const BundleArtifactType = "application/vnd.dev.sigstore.bundle.v0.3+json"

const (
	bundleTypePrefix = "application/vnd.dev.sigstore.bundle"
	// Registries that derive a referrer's artifactType from its config media
	// type (go-containerregistry's test registry, some older ones) report the
	// empty config type for cosign's bundle manifests.
	emptyConfigType = "application/vnd.oci.empty.v1+json"
)

// foundBundle is one bundle referrer of the digest, or why it is unusable.
type foundBundle struct {
	manifest string // digest of the referrer manifest, for messages
	bundle   *sgbundle.Bundle
	err      error
}

// verifyBundles checks the sigstore bundles attached to digest as referrers.
//
// cosign.VerifyImageAttestations with NewBundleFormat is GetBundles +
// VerifyNewBundle on each bundle, and returns the DSSE payloads without the
// certificate. VerifyNewBundle is called directly here, once per configured
// key or identity (cosign accepts a single identity per call), so each
// verified bundle is attributed to its signer. The digest binding comes from
// sigstore-go's artifact-digest policy: the in-toto statement's subject (or a
// message signature's digest) must be this digest, which is what
// IntotoSubjectClaimVerifier checks on the legacy attestation path.
func verifyBundles(ctx context.Context, reg Registry, repo, digest string, ts trustSet) Result {
	found, truncated, err := fetchBundles(ctx, reg, repo, digest)
	if err != nil {
		return Result{State: StateError, Error: fmt.Sprintf("%s: %v", FormatBundle, err)}
	}
	if len(found) == 0 {
		return Result{State: StateUnsigned}
	}
	raw, err := hex.DecodeString(strings.TrimPrefix(digest, "sha256:"))
	if err != nil {
		return Result{State: StateError, Error: err.Error()}
	}
	policy := verify.WithArtifactDigest("sha256", raw)

	var signers []Signer
	var reasons []string
	for _, f := range found {
		if f.err != nil {
			reasons = append(reasons, fmt.Sprintf("referrer %s: %v", f.manifest, f.err))
			continue
		}
		signer, why := verifyBundle(ctx, f.bundle, policy, ts)
		if signer != nil {
			signers = appendSigners(signers, *signer)
			continue
		}
		reasons = append(reasons, fmt.Sprintf("referrer %s: %s", f.manifest, why))
	}
	if len(signers) > 0 {
		return Result{State: StateVerified, Signers: signers}
	}
	if truncated {
		reasons = append([]string{fmt.Sprintf("only the first %d bundles were checked", maxSignatures)}, reasons...)
	}
	return Result{State: StateInvalid, Error: describeFailures(FormatBundle, reasons)}
}

func verifyBundle(ctx context.Context, b *sgbundle.Bundle, policy verify.ArtifactPolicyOption, ts trustSet) (*Signer, string) {
	if ts.requireTlog {
		if entries, err := b.TlogEntries(); err != nil || len(entries) == 0 {
			return nil, "no transparency-log entry in the bundle, and one is required"
		}
	}
	var why []string
	for _, v := range ts.verifiers {
		opts := v.opts
		res, err := cosign.VerifyNewBundle(ctx, &opts, policy, b)
		if err != nil {
			why = append(why, verifierFailure(v, err, func() *x509.Certificate {
				vc, err := b.VerificationContent()
				if err != nil {
					return nil
				}
				return vc.Certificate()
			}))
			continue
		}
		s := Signer{Format: FormatBundle, KeyID: v.keyID}
		if v.keyID == "" {
			if res.Signature == nil || res.Signature.Certificate == nil {
				why = append(why, v.desc+": verified without a certificate")
				continue
			}
			s.Issuer = res.Signature.Certificate.Issuer
			s.Subject = res.Signature.Certificate.SubjectAlternativeName
		}
		return &s, ""
	}
	mostSpecificFirst(why)
	return nil, strings.Join(why, "; ")
}

// fetchBundles lists the referrers of digest and loads those that hold a
// sigstore bundle. Referrers of other kinds (SBOMs, attestations of other
// predicates, legacy cosign OCI 1.1 signatures) are not signatures of this
// image and are skipped.
func fetchBundles(ctx context.Context, reg Registry, repo, digest string) ([]foundBundle, bool, error) {
	return fetchBundlesOf(ctx, reg, repo, digest, isSignPredicate)
}

// isSignPredicate: only cosign's "sign" statement is a signature of the
// image; other predicates (provenance, SBOM, VEX, scan results) say
// something else.
func isSignPredicate(predicateType string) bool {
	return predicateType == types.CosignSignPredicateType
}

// fetchBundlesOf is fetchBundles for the DSSE bundles whose statement's
// predicate type accept takes (message-signature bundles are always kept).
func fetchBundlesOf(ctx context.Context, reg Registry, repo, digest string, accept func(predicateType string) bool) ([]foundBundle, bool, error) {
	body, err := reg.Referrers(ctx, repo, digest, BundleArtifactType)
	if errors.Is(err, ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("list referrers of %s@%s: %w", repo, digest, err)
	}
	if len(body) > maxManifestBytes {
		return nil, false, fmt.Errorf("referrers of %s@%s: %d bytes exceeds the %d limit", repo, digest, len(body), maxManifestBytes)
	}
	var idx struct {
		Manifests []struct {
			Digest       string `json:"digest"`
			ArtifactType string `json:"artifactType"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, false, fmt.Errorf("parse referrers of %s@%s: %w", repo, digest, err)
	}
	var out []foundBundle
	for _, d := range idx.Manifests {
		at := d.ArtifactType
		if at != "" && at != emptyConfigType && !strings.HasPrefix(at, bundleTypePrefix) {
			continue
		}
		if len(out) == maxSignatures {
			return out, true, nil
		}
		b, err := loadBundle(ctx, reg, repo, digest, d.Digest, accept)
		if errors.Is(err, errNotBundle) {
			continue
		}
		if err != nil && isFetchFailure(ctx, err) {
			return nil, false, err
		}
		out = append(out, foundBundle{manifest: d.Digest, bundle: b, err: err})
	}
	return out, false, nil
}

var errNotBundle = errors.New("not a sigstore bundle referrer")

// loadBundle fetches one referrer manifest and its bundle layer, checking both
// against their digests: the referrers list and the Registry are upstream data
// and are not trusted to return what they name.
func loadBundle(ctx context.Context, reg Registry, repo, subject, manifestDigest string, accept func(predicateType string) bool) (*sgbundle.Bundle, error) {
	if err := checkDigest(manifestDigest); err != nil {
		return nil, fmt.Errorf("referrer: %w", err)
	}
	body, _, _, err := reg.Manifest(ctx, repo, manifestDigest)
	if err != nil {
		return nil, &fetchError{err: fmt.Errorf("fetch referrer %s: %w", manifestDigest, err)}
	}
	if len(body) > maxManifestBytes {
		return nil, fmt.Errorf("referrer manifest: %d bytes exceeds the %d limit", len(body), maxManifestBytes)
	}
	if got := sha256Digest(body); got != manifestDigest {
		return nil, fmt.Errorf("referrer content has digest %s", got)
	}
	var m struct {
		ArtifactType string `json:"artifactType"`
		Config       struct {
			MediaType string `json:"mediaType"`
		} `json:"config"`
		Layers []struct {
			MediaType string `json:"mediaType"`
			Digest    string `json:"digest"`
		} `json:"layers"`
		Subject *struct {
			Digest string `json:"digest"`
		} `json:"subject"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("parse referrer manifest: %w", err)
	}
	at := m.ArtifactType
	if at == "" {
		at = m.Config.MediaType
	}
	if !strings.HasPrefix(at, bundleTypePrefix) && !(len(m.Layers) == 1 && strings.HasPrefix(m.Layers[0].MediaType, bundleTypePrefix)) {
		return nil, errNotBundle
	}
	if m.Subject == nil || m.Subject.Digest != subject {
		return nil, errNotBundle // listed under the wrong subject: not a referrer of this digest
	}
	if len(m.Layers) != 1 || !strings.HasPrefix(m.Layers[0].MediaType, bundleTypePrefix) {
		return nil, fmt.Errorf("expected exactly one %s layer", bundleTypePrefix)
	}
	data, err := readBlob(ctx, reg, repo, m.Layers[0].Digest)
	if err != nil {
		return nil, err
	}
	b := &sgbundle.Bundle{}
	if err := b.UnmarshalJSON(data); err != nil {
		return nil, fmt.Errorf("parse bundle: %w", err)
	}
	// cosign refuses older bundles from registries (ociremote.Bundle); so do we.
	if !b.MinVersion("v0.3") {
		return nil, errors.New("bundle version older than v0.3")
	}
	if env := b.GetDsseEnvelope(); env != nil {
		var st struct {
			PredicateType string `json:"predicateType"`
		}
		if err := json.Unmarshal(env.GetPayload(), &st); err != nil {
			return nil, fmt.Errorf("parse statement: %w", err)
		}
		if !accept(st.PredicateType) {
			return nil, errNotBundle
		}
	}
	return b, nil
}

// readBlob reads a small blob fully and checks it against its digest.
func readBlob(ctx context.Context, reg Registry, repo, digest string) ([]byte, error) {
	if err := checkDigest(digest); err != nil {
		return nil, fmt.Errorf("blob: %w", err)
	}
	rc, err := reg.Blob(ctx, repo, digest)
	if err != nil {
		return nil, &fetchError{err: fmt.Errorf("fetch blob %s: %w", digest, err)}
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxBlobBytes+1))
	if err != nil {
		return nil, &fetchError{err: fmt.Errorf("read blob %s: %w", digest, err)}
	}
	if len(data) > maxBlobBytes {
		return nil, fmt.Errorf("blob %s exceeds the %d byte limit for signature content", digest, maxBlobBytes)
	}
	if got := sha256Digest(data); got != digest {
		return nil, fmt.Errorf("blob %s: content has digest %s", digest, got)
	}
	return data, nil
}
