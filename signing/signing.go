// Package signing discovers and verifies the signatures of a manifest digest,
// entirely offline.
//
// Two formats are understood:
//   - cosign's legacy tag "sha256-<hex>.sig": an OCI manifest whose layers are
//     simple-signing payloads, signature and certificates in annotations, the
//     Rekor proof in the "dev.sigstore.cosign/bundle" annotation;
//   - sigstore bundles (v0.3) attached as OCI 1.1 referrers with artifactType
//     application/vnd.dev.sigstore.bundle.v0.3+json, as cosign v3 writes them.
//
// Verification is cosign's own (github.com/sigstore/cosign/v2/pkg/cosign), fed
// from a Registry the caller supplies and from trust material read from local
// files. Nothing here talks to Rekor, Fulcio or TUF: a signature whose proof
// would need an online lookup does not verify.
package signing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrNotFound is what a Registry wraps when a manifest, blob or referrers list
// does not exist upstream. Anything else is treated as a failure to look.
var ErrNotFound = errors.New("not found")

// Registry is how signing reads from the registry. The proxy implements it over
// its upstream client and cache; tests implement it over a loopback registry.
type Registry interface {
	// Manifest fetches a manifest by tag or digest. Not found: an error wrapping ErrNotFound.
	Manifest(ctx context.Context, repo, reference string) (body []byte, mediaType string, digest string, err error)
	// Blob opens a blob by digest. Not found: an error wrapping ErrNotFound.
	Blob(ctx context.Context, repo, digest string) (io.ReadCloser, error)
	// Referrers returns the OCI referrers index of digest, filtered by
	// artifactType when the upstream does so itself. Do not filter on the
	// client side: some registries report a referrer's config media type as
	// its artifactType, and signing recognises those by their content.
	// Not found / unsupported: an error wrapping ErrNotFound.
	Referrers(ctx context.Context, repo, digest, artifactType string) (indexJSON []byte, err error)
}

// Trust says which signatures count.
type Trust struct {
	// Keys are PEM public key files (cosign.pub style; ECDSA, Ed25519 or RSA).
	Keys []string
	// Identities are keyless signers, matched against Fulcio-style certificates
	// that chain to a CA of TrustedRoot.
	Identities []Identity
	// TrustedRoot is the path of a sigstore trusted_root.json (Fulcio CAs, Rekor
	// keys, CT logs). Required for Identities and for RequireTlog; read locally.
	TrustedRoot string
	// RequireTlog demands a transparency-log proof (Rekor SET / inclusion proof)
	// that verifies offline against TrustedRoot. The zero value waives it, so the
	// policy layer must default it to true (and does for keyless rules): without
	// a log entry a keyless certificate is only checked against the current time.
	RequireTlog bool
}

// Identity is one allowed keyless signer: an OIDC issuer and a certificate
// subject (SAN: e-mail or URI), each given exactly or as a Go regexp, not
// both. Regexps are unanchored, as in cosign: write ^…$.
type Identity struct {
	Issuer        string
	IssuerRegexp  string
	Subject       string
	SubjectRegexp string
}

// Signer records who produced a verified signature.
type Signer struct {
	// KeyID is the fingerprint of the configured key that verified it: 16 hex
	// digits of the SHA-256 of its PKIX DER encoding (see KeyID).
	KeyID string `json:"keyId,omitempty"`
	// Issuer and Subject are the OIDC issuer and the subject alternative name of
	// the certificate, for keyless signatures.
	Issuer  string `json:"issuer,omitempty"`
	Subject string `json:"subject,omitempty"`
	// Format is FormatCosignTag or FormatBundle.
	Format string `json:"format"`
}

// Signature formats reported in Signer.Format.
const (
	FormatCosignTag = "cosign-tag"
	FormatBundle    = "sigstore-bundle"
)

// Result states.
const (
	StateVerified = "verified" // at least one signature verifies against Trust
	StateUnsigned = "unsigned" // no signature found at all
	StateInvalid  = "invalid"  // signatures exist but none verifies; Error says why
	StateError    = "error"    // registry, parsing or configuration failure; Error says what
)

// Result is the outcome of verifying one digest.
type Result struct {
	State   string   `json:"state"`
	Signers []Signer `json:"signers,omitempty"`
	Error   string   `json:"error,omitempty"`
	// CoveredBy is the digest of the index whose verified signature covers this
	// manifest, when the manifest itself has none that verifies.
	CoveredBy string `json:"coveredBy,omitempty"`
}

// maxSignatures bounds the work one digest can cause: upstream content is not
// trusted, and each signature costs a blob fetch and a few verifications.
const maxSignatures = 64

// Verify discovers the signatures of repo@digest in both formats and verifies
// them against trust. repo is the repository path on the upstream (no host);
// digest must be sha256. Every failure is reported in the Result (state
// "error"), so the caller's on_error policy decides what it means.
func Verify(ctx context.Context, reg Registry, repo, digest string, trust Trust) Result {
	if err := checkDigest(digest); err != nil {
		return Result{State: StateError, Error: err.Error()}
	}
	ts, err := compileTrust(trust)
	if err != nil {
		return Result{State: StateError, Error: err.Error()}
	}
	return verifyDigest(ctx, reg, repo, digest, ts)
}

func verifyDigest(ctx context.Context, reg Registry, repo, digest string, ts trustSet) Result {
	tag := verifyCosignTag(ctx, reg, repo, digest, ts)
	bundles := verifyBundles(ctx, reg, repo, digest, ts)
	return Merge(tag, bundles)
}

// VerifyWithIndex verifies digest and, if no signature of its own verifies,
// lets a verified signature on the index indexDigest cover it: clients sign the
// index and pull a platform manifest. The index is fetched and checked to list
// digest, so a signed index cannot vouch for an unrelated manifest.
func VerifyWithIndex(ctx context.Context, reg Registry, repo, digest, indexDigest string, trust Trust) Result {
	return VerifyWithIndexes(ctx, reg, repo, digest, []string{indexDigest}, trust)
}

// VerifyWithIndexes is VerifyWithIndex for a manifest listed by several
// indexes of the repository: the first index whose verified signature
// covers it wins.
func VerifyWithIndexes(ctx context.Context, reg Registry, repo, digest string, indexes []string, trust Trust) Result {
	if err := checkDigest(digest); err != nil {
		return Result{State: StateError, Error: err.Error()}
	}
	ts, err := compileTrust(trust)
	if err != nil {
		return Result{State: StateError, Error: err.Error()}
	}
	own := verifyDigest(ctx, reg, repo, digest, ts)
	results := []Result{own}
	for _, indexDigest := range indexes {
		if own.State == StateVerified {
			return own
		}
		if indexDigest == "" || indexDigest == digest {
			continue
		}
		listed, err := indexLists(ctx, reg, repo, indexDigest, digest)
		if err != nil {
			results = append(results, Result{State: StateError, Error: err.Error()})
			continue
		}
		if !listed {
			continue
		}
		idx := verifyDigest(ctx, reg, repo, indexDigest, ts)
		if idx.State == StateVerified {
			idx.CoveredBy = indexDigest
			return idx
		}
		if idx.Error != "" {
			idx.Error = "index " + indexDigest + ": " + idx.Error
		}
		results = append(results, idx)
	}
	return Merge(results...)
}

// indexLists fetches the index by digest, checks the bytes are what the digest
// names, and reports whether it lists child.
func indexLists(ctx context.Context, reg Registry, repo, indexDigest, child string) (bool, error) {
	if err := checkDigest(indexDigest); err != nil {
		return false, fmt.Errorf("index: %w", err)
	}
	body, _, _, err := reg.Manifest(ctx, repo, indexDigest)
	if err != nil {
		return false, fmt.Errorf("fetch index %s@%s: %w", repo, indexDigest, err)
	}
	if len(body) > maxManifestBytes {
		return false, fmt.Errorf("index %s@%s: %d bytes exceeds the %d limit", repo, indexDigest, len(body), maxManifestBytes)
	}
	if got := sha256Digest(body); got != indexDigest {
		return false, fmt.Errorf("index %s@%s: registry returned content with digest %s", repo, indexDigest, got)
	}
	var idx struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(body, &idx); err != nil {
		return false, fmt.Errorf("parse index %s@%s: %w", repo, indexDigest, err)
	}
	for _, m := range idx.Manifests {
		if m.Digest == child {
			return true, nil
		}
	}
	return false, nil
}

// Merge combines the outcomes of independent looks at the same question. A
// verified signature wins; otherwise a failure to look (error) beats a
// rejection (invalid), since what could not be read might have verified; only
// when every look found nothing is the digest unsigned.
func Merge(results ...Result) Result {
	var out Result
	rank := map[string]int{StateUnsigned: 0, StateInvalid: 1, StateError: 2, StateVerified: 3}
	var errs, failedToLook []string
	for _, r := range results {
		if r.State == "" {
			continue
		}
		if rank[r.State] > rank[out.State] || out.State == "" {
			out.State = r.State
		}
		if r.State == StateVerified {
			out.Signers = appendSigners(out.Signers, r.Signers...)
		}
		switch {
		case r.Error == "":
		case r.State == StateError:
			failedToLook = append(failedToLook, r.Error)
		default:
			errs = append(errs, r.Error)
		}
	}
	// Most specific first, so a truncated message keeps it: an identity
	// mismatch, then signatures that were checked and failed, then what
	// could not be read.
	mostSpecificFirst(errs)
	errs = append(errs, failedToLook...)
	if out.State == "" {
		out.State = StateUnsigned
	}
	if out.State != StateVerified && out.State != StateUnsigned {
		out.Error = strings.Join(errs, "; ")
	}
	return out
}

// appendSigners adds signers not already listed: the same key or identity
// signing twice in one format is one signer.
func appendSigners(list []Signer, add ...Signer) []Signer {
	for _, s := range add {
		dup := false
		for _, have := range list {
			if have == s {
				dup = true
				break
			}
		}
		if !dup {
			list = append(list, s)
		}
	}
	return list
}

// maxReasons bounds how many per-signature reasons an Error lists: enough to
// diagnose, short enough for a log line and a verdict record.
const maxReasons = 8

// describeFailures joins why each signature of one format failed.
func describeFailures(format string, reasons []string) string {
	mostSpecificFirst(reasons)
	if len(reasons) > maxReasons {
		reasons = append(reasons[:maxReasons:maxReasons], fmt.Sprintf("and %d more", len(reasons)-maxReasons))
	}
	return format + ": " + strings.Join(reasons, "; ")
}

// checkDigest accepts only sha256 digests: cosign's tag scheme and the claims
// inside signatures are sha256, and the digest ends up in registry paths.
func checkDigest(d string) error {
	hexPart, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hexPart) != 64 {
		return fmt.Errorf("digest %q: want sha256:<64 hex>", d)
	}
	if _, err := hex.DecodeString(hexPart); err != nil || strings.ToLower(hexPart) != hexPart {
		return fmt.Errorf("digest %q: want lowercase hex", d)
	}
	return nil
}

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
