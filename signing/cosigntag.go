package signing

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
)

// verifyCosignTag checks cosign's legacy "sha256-<hex>.sig" tag.
//
// cosign.VerifyImageSignatures is ResolveDigest + SignatureTag + Signatures +
// VerifyImageSignature on a static.Copy of each signature. The same steps are
// taken here one by one, so that the tag is fetched once however many keys
// and identities are configured, each verified signature is attributed to
// the key or identity that verified it, and a registry failure (error) is not
// mistaken for a bad signature (invalid).
func verifyCosignTag(ctx context.Context, reg Registry, repo, digest string, ts trustSet) Result {
	sigs, truncated, err := fetchCosignTag(ctx, reg, repo, digest)
	if err != nil {
		return Result{State: StateError, Error: fmt.Sprintf("%s: %v", FormatCosignTag, err)}
	}
	if len(sigs) == 0 {
		return Result{State: StateUnsigned}
	}
	h, err := v1.NewHash(digest)
	if err != nil {
		return Result{State: StateError, Error: err.Error()}
	}
	var signers []Signer
	var reasons []string
	for i, sig := range sigs {
		if sig.err != nil {
			reasons = append(reasons, fmt.Sprintf("signature %d: %v", i+1, sig.err))
			continue
		}
		signer, why := verifyTagSignature(ctx, sig.sig, h, ts)
		if signer != nil {
			signers = appendSigners(signers, *signer)
			continue
		}
		reasons = append(reasons, fmt.Sprintf("signature %d: %s", i+1, why))
	}
	if len(signers) > 0 {
		return Result{State: StateVerified, Signers: signers}
	}
	if truncated {
		reasons = append([]string{fmt.Sprintf("only the first %d signatures were checked", maxSignatures)}, reasons...)
	}
	return Result{State: StateInvalid, Error: describeFailures(FormatCosignTag, reasons)}
}

// tagSignature is one layer of the .sig manifest, read into memory, or why it
// could not be read.
type tagSignature struct {
	sig oci.Signature
	err error
}

// fetchCosignTag reads the .sig tag of digest through reg, using cosign's own
// ociremote code so its layout rules (annotations, certificate chain, Rekor
// bundle) apply unchanged. A missing tag is no signatures, not an error.
func fetchCosignTag(ctx context.Context, reg Registry, repo, digest string) (sigs []tagSignature, truncated bool, err error) {
	return fetchTagImage(ctx, reg, repo, digest, ociremote.SignatureTag)
}

// fetchTagImage reads the signature image cosign keeps under the tag
// tagOf names (SignatureTag: .sig; AttestationTag: .att, laid out alike).
func fetchTagImage(ctx context.Context, reg Registry, repo, digest string, tagOf func(name.Reference, ...ociremote.Option) (name.Tag, error)) (sigs []tagSignature, truncated bool, err error) {
	ref, err := name.NewDigest(registryHost + "/" + repo + "@" + digest)
	if err != nil {
		return nil, false, fmt.Errorf("reference %s@%s: %w", repo, digest, err)
	}
	opts := []ociremote.Option{ociremote.WithRemoteOptions(remoteOptions(ctx, reg)...)}
	tag, err := tagOf(ref, opts...)
	if err != nil {
		return nil, false, fmt.Errorf("signature tag of %s: %w", digest, err)
	}
	found, err := ociremote.Signatures(tag, opts...)
	if err != nil {
		return nil, false, fmt.Errorf("fetch %s: %w", tag.TagStr(), fetchCause(err))
	}
	list, err := found.Get()
	if err != nil {
		if isFetchFailure(ctx, err) {
			return nil, false, fmt.Errorf("read %s: %w", tag.TagStr(), fetchCause(err))
		}
		// The tag exists but its manifest is not a usable signature image:
		// report it as a signature that does not verify.
		return []tagSignature{{err: fmt.Errorf("read %s: %w", tag.TagStr(), err)}}, false, nil
	}
	if len(list) > maxSignatures {
		list, truncated = list[:maxSignatures], true
	}
	for _, s := range list {
		// static.Copy reads the payload blob and parses every annotation once,
		// so verification below works on memory only.
		c, err := static.Copy(s)
		if err != nil && isFetchFailure(ctx, err) {
			return nil, false, fmt.Errorf("read signature from %s: %w", tag.TagStr(), fetchCause(err))
		}
		sigs = append(sigs, tagSignature{sig: c, err: err})
	}
	return sigs, truncated, nil
}

// verifyTagSignature tries each verifier on one signature and returns the
// signer of the first that accepts it, or why none did.
func verifyTagSignature(ctx context.Context, sig oci.Signature, h v1.Hash, ts trustSet) (*Signer, string) {
	if ts.requireTlog {
		// Say plainly what is missing rather than cosign's "offline
		// verification failed".
		if b, err := sig.Bundle(); err != nil || b == nil {
			return nil, "no transparency-log entry (Rekor bundle) attached, and one is required"
		}
	}
	var why []string
	for _, v := range ts.verifiers {
		opts := v.opts
		if _, err := cosign.VerifyImageSignature(ctx, sig, h, &opts); err != nil {
			why = append(why, verifierFailure(v, err, func() *x509.Certificate {
				cert, _ := sig.Cert()
				return cert
			}))
			continue
		}
		s, problem := tagSigner(v, sig)
		if s == nil {
			why = append(why, problem)
			continue
		}
		return s, ""
	}
	mostSpecificFirst(why)
	return nil, strings.Join(why, "; ")
}

// fetchCause strips go-containerregistry's HTTP wrapping (which names the
// in-process URL, meaningless to a reader) from a Registry failure.
func fetchCause(err error) error {
	var fe *fetchError
	if errors.As(err, &fe) {
		return fe.err
	}
	return err
}

// isFetchFailure tells a failure to read from the registry (including a
// cancelled request) from content that was read but is unusable.
func isFetchFailure(ctx context.Context, err error) bool {
	var fe *fetchError
	var te *transport.Error
	return errors.As(err, &fe) || errors.As(err, &te) || ctx.Err() != nil
}

// tagSigner is who made a signature (or attestation) of the .att/.sig tag
// that v verified: v's key, or the identity in the signature's
// certificate; or why it cannot be said.
func tagSigner(v verifier, sig oci.Signature) (*Signer, string) {
	s := Signer{Format: FormatCosignTag, KeyID: v.keyID}
	if v.keyID == "" {
		cert, err := sig.Cert()
		if err != nil || cert == nil {
			return nil, v.desc + ": verified but the certificate cannot be read back"
		}
		sum, err := certificate.SummarizeCertificate(cert)
		if err != nil {
			return nil, v.desc + ": " + err.Error()
		}
		s.Issuer, s.Subject = sum.Issuer, sum.SubjectAlternativeName
	}
	return &s, ""
}
