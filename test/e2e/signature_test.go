package e2e

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci/empty"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/portcullis/portcullis/test/testregistry"
)

// signWithKey signs repo@digest on the upstream the way `cosign sign --key`
// does with no transparency log (a .sig tag), and returns the public key file.
func signWithKey(t *testing.T, up *testregistry.Registry, repo, digest string) string {
	t.Helper()
	priv, err := cosign.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewDigest(up.Host() + "/" + repo + "@" + digest)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := payload.Cosign{Image: ref}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	sig, err := sv.SignMessage(bytes.NewReader(pl))
	if err != nil {
		t.Fatal(err)
	}
	ociSig, err := static.NewSignature(pl, base64.StdEncoding.EncodeToString(sig))
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := mutate.AppendSignatures(empty.Signatures(), false, ociSig)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := ociremote.SignatureTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, sigs); err != nil {
		t.Fatal(err)
	}
	pem, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(path, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A rule requiring a signature by our key: signed digests pass, unsigned ones
// are refused with UNSIGNED's message, and a key that signed nothing here
// makes the signature invalid.
func TestSignatureRequired(t *testing.T) {
	up := startUpstream(t)
	signed := ociImage(t, 512)
	unsigned := ociImage(t, 512)
	signedDigest := up.Push(t, "team/app", "signed", signed).String()
	up.Push(t, "team/app", "unsigned", unsigned)
	pub := signWithKey(t, up, "team/app", signedDigest)
	otherPub := signWithKey(t, up, "team/other", up.Push(t, "team/other", "x", ociImage(t, 256)).String())

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
	pubFile := signWithKey(t, up, "team/app", d)
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
