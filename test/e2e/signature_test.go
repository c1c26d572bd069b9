package e2e

import (
	"crypto"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/portcullis/portcullis/test/fixtures"
)

// A rule requiring a signature by our key: signed digests pass, unsigned ones
// are refused with UNSIGNED's message, and a key that signed nothing here
// makes the signature invalid.
func TestSignatureRequired(t *testing.T) {
	up := startUpstream(t)
	signed := ociImage(t, 512)
	unsigned := ociImage(t, 512)
	signedDigest := up.Push(t, "team/app", "signed", signed).String()
	up.Push(t, "team/app", "unsigned", unsigned)
	pub := fixtures.SignWithKey(t, up, "team/app", signedDigest)
	otherPub := fixtures.SignWithKey(t, up, "team/other", up.Push(t, "team/other", "x", ociImage(t, 256)).String())

	for _, tc := range []struct {
		name, key, tag string
		allowed        bool
		reason         string
	}{
		{"signed by the trusted key", pub, "signed", true, ""},
		{"unsigned", pub, "unsigned", false, "not signed"},
		{"signed by another key", otherPub, "signed", false, "signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policyFile := filepath.Join(t.TempDir(), "policy.yaml")
			os.WriteFile(policyFile, []byte(`
rules:
  - name: signed-only
    match: {upstreams: [up.test]}
    signature: {required: true, keys: [`+tc.key+`], tlog: false}
    on_unscanned: {wait: 30s, then: block}
`), 0o600)
			pc := withConfig(t, up, "default_upstream: up.test\nupstreams: [{name: up.test, url: UPSTREAM_URL}]\npolicy: "+policyFile+"\n")
			r := do(t, "GET", pc.URL+"/v2/team/app/manifests/"+tc.tag)
			if tc.allowed {
				if r.status != 200 {
					t.Fatalf("signed image refused: %d %s", r.status, r.body)
				}
				// Who signed is recorded with the result.
				rec := do(t, "GET", pc.URL+"/api/v1/scans/"+signedDigest)
				if !strings.Contains(string(rec.body), `"state": "verified"`) || !strings.Contains(string(rec.body), `"key_id"`) {
					t.Fatalf("signature not recorded: %s", rec.body)
				}
				return
			}
			msg := wantError(t, r, 403, "DENIED")
			if !strings.Contains(strings.ToLower(msg), tc.reason) {
				t.Fatalf("message %q lacks %q", msg, tc.reason)
			}
		})
	}
}

// cosign's own verification code, pointed at the mirror, finds and verifies
// the signature: the .sig tag passes through unchanged.
func TestCosignVerifyThroughPortcullis(t *testing.T) {
	up := startUpstream(t)
	d := up.Push(t, "team/app", "1.0", ociImage(t, 512)).String()
	pubFile := fixtures.SignWithKey(t, up, "team/app", d)
	pc := withConfig(t, up, "default_upstream: up.test\nupstreams: [{name: up.test, url: UPSTREAM_URL}]\n")

	pemBytes, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewDigest(strings.TrimPrefix(pc.URL, "http://") + "/up.test/team/app@" + d)
	if err != nil {
		t.Fatal(err)
	}
	sigs, _, err := cosign.VerifyImageSignatures(t.Context(), ref, &cosign.CheckOpts{
		SigVerifier: verifier, ClaimVerifier: cosign.SimpleClaimVerifier, IgnoreTlog: true, Offline: true,
	})
	if err != nil || len(sigs) != 1 {
		t.Fatalf("cosign verify through portcullis: %d signatures, %v", len(sigs), err)
	}
	// And a digest without a signature is reported as such.
	other := up.Push(t, "team/app", "2.0", ociImage(t, 512)).String()
	ref2, _ := name.NewDigest(strings.TrimPrefix(pc.URL, "http://") + "/up.test/team/app@" + other)
	if _, _, err := cosign.VerifyImageSignatures(t.Context(), ref2, &cosign.CheckOpts{
		SigVerifier: verifier, ClaimVerifier: cosign.SimpleClaimVerifier, IgnoreTlog: true, Offline: true,
	}); err == nil {
		t.Fatal("an unsigned digest verified")
	}
}
