package signing

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
)

// verifier is one way a signature may be trusted: one configured key (in one
// hash/variant flavour), or one keyless identity. Each carries the cosign
// CheckOpts that express it, without any registry options: signatures are
// fetched before verification, never by cosign itself.
type verifier struct {
	desc  string // for error messages: "key 1a2b…" or "identity …"
	keyID string // set for keys
	opts  cosign.CheckOpts
}

// KeyID is the fingerprint recorded for key signers: the first 16 hex digits
// (64 bits) of the SHA-256 of the key's PKIX DER encoding. Stable across PEM
// re-encodings of the same key, and what `portcullis` shows next to key files.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])[:16], nil
}

// trustSet is Trust made ready: keys and root loaded, one verifier per way a
// signature may be accepted.
type trustSet struct {
	verifiers   []verifier
	requireTlog bool
}

// compileTrust loads keys and the trusted root from disk and turns Trust into
// the list of verifiers to try. Every verifier has ClaimVerifier set, so a
// signature lifted from another image's tag never verifies, and Offline set,
// so cosign never falls back to a Rekor lookup.
func compileTrust(t Trust) (trustSet, error) {
	if len(t.Keys) == 0 && len(t.Identities) == 0 {
		return trustSet{}, errors.New("trust: no keys and no identities configured")
	}
	var tm root.TrustedMaterial
	if t.TrustedRoot != "" {
		tr, err := root.NewTrustedRootFromPath(t.TrustedRoot)
		if err != nil {
			return trustSet{}, fmt.Errorf("trust: load trusted root %s: %w", t.TrustedRoot, err)
		}
		tm = tr
	}
	if tm == nil && (len(t.Identities) > 0 || t.RequireTlog) {
		return trustSet{}, errors.New("trust: keyless identities and transparency-log checks need a trusted_root.json")
	}
	base := cosign.CheckOpts{
		ClaimVerifier:   cosign.SimpleClaimVerifier,
		TrustedMaterial: tm,
		IgnoreTlog:      !t.RequireTlog,
		Offline:         true,
	}

	var vs []verifier
	for _, path := range t.Keys {
		kvs, err := keyVerifiers(path, base)
		if err != nil {
			return trustSet{}, err
		}
		vs = append(vs, kvs...)
	}
	for i, id := range t.Identities {
		if err := checkIdentity(id); err != nil {
			return trustSet{}, fmt.Errorf("trust: identity %d: %w", i+1, err)
		}
		opts := base
		opts.Identities = []cosign.Identity{{
			Issuer: id.Issuer, IssuerRegExp: id.IssuerRegexp,
			Subject: id.Subject, SubjectRegExp: id.SubjectRegexp,
		}}
		// Public-good Fulcio certificates carry SCTs and the trusted root lists
		// the CT logs to check them against. A private CA without CT has no log
		// keys in its root; demanding SCTs there would reject every signature.
		opts.IgnoreSCT = len(tm.CTLogs()) == 0
		vs = append(vs, verifier{desc: "identity " + describeIdentity(id), opts: opts})
	}
	return trustSet{verifiers: vs, requireTlog: t.RequireTlog}, nil
}

// keyVerifiers loads a PEM public key. cosign signs with the key's default
// algorithm (P-384 with SHA-384, Ed25519 pre-hashed) while `cosign verify
// --key` checks with SHA-256 (pure Ed25519); both flavours are tried so keys
// work whichever way the signature was made.
func keyVerifiers(path string, base cosign.CheckOpts) ([]verifier, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("trust: read key: %w", err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(raw)
	if err != nil {
		return nil, fmt.Errorf("trust: parse key %s: %w", path, err)
	}
	id, err := KeyID(pub)
	if err != nil {
		return nil, fmt.Errorf("trust: key %s: %w", path, err)
	}
	def, err := signature.LoadDefaultVerifier(pub, options.WithED25519ph())
	if err != nil {
		return nil, fmt.Errorf("trust: key %s: %w", path, err)
	}
	flavours := []signature.Verifier{def}
	if !defaultIsSHA256(pub) {
		sha, err := signature.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("trust: key %s: %w", path, err)
		}
		flavours = append(flavours, sha)
	}
	vs := make([]verifier, 0, len(flavours))
	for _, sv := range flavours {
		opts := base
		opts.SigVerifier = sv
		if opts.TrustedMaterial == nil {
			// The bundle verifier insists on trusted material even for keys; an
			// empty set is the honest answer when no root is configured (and
			// only allowed with the log waived, see compileTrust).
			opts.TrustedMaterial = &root.BaseTrustedMaterial{}
		}
		vs = append(vs, verifier{desc: "key " + id, keyID: id, opts: opts})
	}
	return vs, nil
}

// defaultIsSHA256 reports whether the key's default algorithm already is the
// SHA-256 flavour `cosign verify --key` uses (P-256 and RSA keys).
func defaultIsSHA256(pub crypto.PublicKey) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return k.Curve == elliptic.P256()
	case *rsa.PublicKey:
		return true
	}
	return false
}

// checkIdentity rejects identities that would match too much or whose exact
// and regexp forms would be read differently by the two verifiers (cosign's
// legacy path prefers the regexp, sigstore-go requires both).
func checkIdentity(id Identity) error {
	if id.Issuer == "" && id.IssuerRegexp == "" {
		return errors.New("issuer or issuer regexp is required")
	}
	if id.Subject == "" && id.SubjectRegexp == "" {
		return errors.New("subject or subject regexp is required")
	}
	if id.Issuer != "" && id.IssuerRegexp != "" {
		return errors.New("set issuer or issuer regexp, not both")
	}
	if id.Subject != "" && id.SubjectRegexp != "" {
		return errors.New("set subject or subject regexp, not both")
	}
	for _, re := range []string{id.IssuerRegexp, id.SubjectRegexp} {
		if _, err := regexp.Compile(re); err != nil {
			return fmt.Errorf("regexp %q: %w", re, err)
		}
	}
	return nil
}

func describeIdentity(id Identity) string {
	s := "issuer=" + id.Issuer
	if id.IssuerRegexp != "" {
		s = "issuer~" + id.IssuerRegexp
	}
	if id.SubjectRegexp != "" {
		return s + " subject~" + id.SubjectRegexp
	}
	return s + " subject=" + id.Subject
}
