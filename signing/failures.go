package signing

import (
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"github.com/sigstore/sigstore-go/pkg/fulcio/certificate"
)

// identityMismatch starts the failure text of a keyless signature whose
// certificate chains to a trusted CA but names a signer no configured
// identity allows. It is the most useful thing to tell someone whose image
// was refused (they signed, with the wrong workflow or account), so failure
// texts are ordered to put it first and survive truncation.
const identityMismatch = "identity mismatch"

// maxIdentityText bounds a certificate's subject or issuer in messages: the
// certificate comes from the registry.
const maxIdentityText = 200

// isIdentityMismatch recognises cosign's (legacy .sig tags) and
// sigstore-go's (bundles) error for a certificate that verified but whose
// identity matched none of those expected. Both check the identity only
// after the chain and the signature.
func isIdentityMismatch(err error) bool {
	s := err.Error()
	return strings.Contains(s, "none of the expected identities matched") || strings.Contains(s, "no matching CertificateIdentity")
}

// verifierFailure describes why verifier v rejected a signature. For an
// identity mismatch it names the signer the certificate does show, in a
// short form instead of cosign's wording; cert is only read in that case.
func verifierFailure(v verifier, err error, cert func() *x509.Certificate) string {
	if v.keyID == "" && isIdentityMismatch(err) {
		if c := cert(); c != nil {
			if sum, serr := certificate.SummarizeCertificate(c); serr == nil {
				// Short, and without "; " or ", " (policy messages split
				// details there), so it fits a block message whole. The
				// allowed identities are in the policy; who signed is news.
				return fmt.Sprintf("%s: signed by %s issued by %s", identityMismatch,
					quoteIdentity(sum.SubjectAlternativeName), quoteIdentity(sum.Issuer))
			}
		}
		return identityMismatch + ": " + v.desc + ": " + err.Error()
	}
	return v.desc + ": " + err.Error()
}

// quoteIdentity quotes a certificate field for a one-line message, escaping
// control characters and cutting it to maxIdentityText bytes.
func quoteIdentity(s string) string {
	if len(s) > maxIdentityText {
		s = s[:maxIdentityText] + "…"
	}
	return fmt.Sprintf("%q", s)
}

// specificity ranks a failure text: identity mismatches first, then
// everything else in the order found.
func specificity(s string) int {
	if strings.Contains(s, identityMismatch+":") {
		return 0
	}
	return 1
}

// mostSpecificFirst orders failure texts by specificity, keeping the order
// within a rank.
func mostSpecificFirst(list []string) {
	slices.SortStableFunc(list, func(a, b string) int { return specificity(a) - specificity(b) })
}
