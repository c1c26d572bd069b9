package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
)

const (
	testIssuer  = "https://token.actions.githubusercontent.com"
	testSubject = "release@acme.example"
)

// format is one way to attach a signature, so each story runs for both.
type format struct {
	name string
	sign func(e *testEnv, t *testing.T, digest string, s testSigner, logged bool)
	// replay moves the signature made for one digest onto another.
	replay func(e *testEnv, t *testing.T, signed, target string, s testSigner)
}

var formats = []format{
	{
		name: FormatCosignTag,
		sign: (*testEnv).signTag,
		replay: func(e *testEnv, t *testing.T, signed, target string, s testSigner) {
			e.signTag(t, signed, s, true)
			e.copyTag(t, signed, target)
		},
	},
	{
		name: FormatBundle,
		sign: (*testEnv).signBundle,
		replay: func(e *testEnv, t *testing.T, signed, target string, s testSigner) {
			b := e.bundleFor(t, signed, s, true)
			e.attachBundle(t, signed, b)
			e.attachBundle(t, target, b) // the same bundle, listed as a referrer of target
		},
	},
}

func verifyIn(t *testing.T, e *testEnv, digest string, trust Trust) Result {
	t.Helper()
	r := Verify(context.Background(), e.reg.client(), e.repo, digest, trust)
	t.Logf("%s: %+v", digest[:19], r)
	return r
}

func wantState(t *testing.T, r Result, state string, errContains ...string) {
	t.Helper()
	if r.State != state {
		t.Fatalf("state = %q, want %q (error: %s)", r.State, state, r.Error)
	}
	for _, s := range errContains {
		if !strings.Contains(r.Error, s) {
			t.Errorf("error %q does not mention %q", r.Error, s)
		}
	}
}

func wantSigners(t *testing.T, r Result, want ...Signer) {
	t.Helper()
	if len(r.Signers) != len(want) {
		t.Fatalf("signers = %+v, want %+v", r.Signers, want)
	}
	for _, w := range want {
		found := false
		for _, s := range r.Signers {
			found = found || s == w
		}
		if !found {
			t.Errorf("signers = %+v, missing %+v", r.Signers, w)
		}
	}
}

func TestKeys(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			e := newTestEnv(t)
			signer, pubPath := newKeySigner(t)
			_, otherPath := newKeySigner(t)
			img := e.reg.pushImage(t, e.repo)
			f.sign(e, t, img, signer, true)
			trust := Trust{Keys: []string{pubPath}, TrustedRoot: e.ss.rootPath, RequireTlog: true}

			t.Run("right key verifies and names the key", func(t *testing.T) {
				r := verifyIn(t, e, img, trust)
				wantState(t, r, StateVerified)
				wantSigners(t, r, Signer{KeyID: signer.keyID, Format: f.name})
			})
			t.Run("wrong key is invalid", func(t *testing.T) {
				r := verifyIn(t, e, img, Trust{Keys: []string{otherPath}, TrustedRoot: e.ss.rootPath, RequireTlog: true})
				wantState(t, r, StateInvalid, f.name)
				// Without the log check the signature itself is what fails.
				wantState(t, verifyIn(t, e, img, Trust{Keys: []string{otherPath}}), StateInvalid, "key ")
			})
			t.Run("unsigned image", func(t *testing.T) {
				wantState(t, verifyIn(t, e, e.reg.pushImage(t, e.repo), trust), StateUnsigned)
			})
		})
	}
}

// TestKeyAlgorithms signs as cosign does for each key type it accepts
// (LoadDefaultSignerVerifier: P-384 with SHA-384, Ed25519 pre-hashed, RSA
// PKCS#1 v1.5) and as older clients did (pure Ed25519).
func TestKeyAlgorithms(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	load := func(k crypto.PrivateKey, opts ...signature.LoadOption) signature.SignerVerifier {
		sv, err := signature.LoadDefaultSignerVerifier(k, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return sv
	}
	pureEd, err := signature.LoadSignerVerifier(edKey, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	keys := []struct {
		name string
		sv   signature.SignerVerifier
	}{
		{"ecdsa-p384", load(p384)},
		{"ed25519ph", load(edKey, options.WithED25519ph())},
		{"ed25519", pureEd},
		{"rsa-2048", load(rsaKey)},
	}
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			e := newTestEnv(t)
			for _, k := range keys {
				t.Run(k.name, func(t *testing.T) {
					signer, path := keySigner(t, k.sv)
					img := e.reg.pushImage(t, e.repo)
					f.sign(e, t, img, signer, false)
					r := verifyIn(t, e, img, Trust{Keys: []string{path}})
					wantState(t, r, StateVerified)
					wantSigners(t, r, Signer{KeyID: signer.keyID, Format: f.name})
				})
			}
		})
	}
}

func TestKeyless(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			e := newTestEnv(t)
			img := e.reg.pushImage(t, e.repo)
			f.sign(e, t, img, e.keylessSigner(t, testSubject, testIssuer), true)

			t.Run("right identity verifies with tlog and SCT", func(t *testing.T) {
				r := verifyIn(t, e, img, Trust{
					Identities:  []Identity{{Issuer: testIssuer, SubjectRegexp: `^release@acme\.example$`}},
					TrustedRoot: e.ss.rootPath, RequireTlog: true,
				})
				wantState(t, r, StateVerified)
				wantSigners(t, r, Signer{Issuer: testIssuer, Subject: testSubject, Format: f.name})
			})
			t.Run("wrong subject is invalid", func(t *testing.T) {
				r := verifyIn(t, e, img, Trust{
					Identities:  []Identity{{Issuer: testIssuer, SubjectRegexp: `^ops@acme\.example$`}},
					TrustedRoot: e.ss.rootPath, RequireTlog: true,
				})
				wantState(t, r, StateInvalid, "identity")
			})
			t.Run("wrong issuer is invalid", func(t *testing.T) {
				r := verifyIn(t, e, img, Trust{
					Identities:  []Identity{{Issuer: "https://accounts.google.com", Subject: testSubject}},
					TrustedRoot: e.ss.rootPath, RequireTlog: true,
				})
				wantState(t, r, StateInvalid)
			})
			t.Run("certificate from another CA is invalid", func(t *testing.T) {
				// Same Rekor and CT logs, different Fulcio: only the chain is wrong.
				other := newTestSigstore(t)
				other.rekorKey, other.ctKey = e.ss.rekorKey, e.ss.ctKey
				r := verifyIn(t, e, img, Trust{
					Identities:  []Identity{{Issuer: testIssuer, Subject: testSubject}},
					TrustedRoot: other.writeRoot(t, true), RequireTlog: true,
				})
				wantState(t, r, StateInvalid, "certificate")
			})
			t.Run("trust material of another deployment is invalid", func(t *testing.T) {
				other := newTestSigstore(t)
				r := verifyIn(t, e, img, Trust{
					Identities:  []Identity{{Issuer: testIssuer, Subject: testSubject}},
					TrustedRoot: other.rootPath, RequireTlog: true,
				})
				wantState(t, r, StateInvalid)
			})
		})
	}
}

func TestCertificateTransparency(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			e := newTestEnv(t)
			noSCT, foreignSCT := e.reg.pushImage(t, e.repo), e.reg.pushImage(t, e.repo)
			f.sign(e, t, noSCT, e.keylessSignerSCT(t, testSubject, testIssuer, nil), true)
			f.sign(e, t, foreignSCT, e.keylessSignerSCT(t, testSubject, testIssuer, newKey(t)), true)
			trust := Trust{
				Identities:  []Identity{{Issuer: testIssuer, Subject: testSubject}},
				TrustedRoot: e.ss.rootPath, RequireTlog: true,
			}

			t.Run("root with CT logs requires an SCT", func(t *testing.T) {
				wantState(t, verifyIn(t, e, noSCT, trust), StateInvalid)
			})
			t.Run("SCT from an unknown log is invalid", func(t *testing.T) {
				wantState(t, verifyIn(t, e, foreignSCT, trust), StateInvalid)
			})
			t.Run("root without CT logs does not", func(t *testing.T) {
				private := trust
				private.TrustedRoot = e.ss.writeRoot(t, false)
				wantState(t, verifyIn(t, e, noSCT, private), StateVerified)
			})
		})
	}
}

func TestForgedInclusionProofIsInvalid(t *testing.T) {
	e := newTestEnv(t)
	img := e.reg.pushImage(t, e.repo)
	e.tamperEntry = func(tle *protorekor.TransparencyLogEntry) {
		tle.InclusionProof.RootHash = make([]byte, 32) // a tree the checkpoint never signed
	}
	e.signBundle(t, img, e.keylessSigner(t, testSubject, testIssuer), true)
	r := verifyIn(t, e, img, Trust{
		Identities:  []Identity{{Issuer: testIssuer, Subject: testSubject}},
		TrustedRoot: e.ss.rootPath, RequireTlog: true,
	})
	wantState(t, r, StateInvalid, "inclusion")
}

func TestReplayedSignatureIsInvalid(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			e := newTestEnv(t)
			signer, pubPath := newKeySigner(t)
			signed, target := e.reg.pushImage(t, e.repo), e.reg.pushImage(t, e.repo)
			f.replay(e, t, signed, target, signer)
			trust := Trust{Keys: []string{pubPath}, TrustedRoot: e.ss.rootPath, RequireTlog: true}

			wantState(t, verifyIn(t, e, signed, trust), StateVerified)
			wantState(t, verifyIn(t, e, target, trust), StateInvalid, "digest")
		})
	}
}

func TestTransparencyLog(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			e := newTestEnv(t)
			keySigner, pubPath := newKeySigner(t)
			byKey, keyless := e.reg.pushImage(t, e.repo), e.reg.pushImage(t, e.repo)
			f.sign(e, t, byKey, keySigner, false)
			f.sign(e, t, keyless, e.keylessSigner(t, testSubject, testIssuer), false)
			keys := Trust{Keys: []string{pubPath}, TrustedRoot: e.ss.rootPath}
			ids := Trust{Identities: []Identity{{Issuer: testIssuer, Subject: testSubject}}, TrustedRoot: e.ss.rootPath}

			t.Run("required but missing is invalid", func(t *testing.T) {
				keys, ids := keys, ids
				keys.RequireTlog, ids.RequireTlog = true, true
				wantState(t, verifyIn(t, e, byKey, keys), StateInvalid, "transparency-log")
				wantState(t, verifyIn(t, e, keyless, ids), StateInvalid, "transparency-log")
			})
			t.Run("waived verifies", func(t *testing.T) {
				wantState(t, verifyIn(t, e, byKey, keys), StateVerified)
				wantState(t, verifyIn(t, e, keyless, ids), StateVerified)
			})
			t.Run("waived without a trusted root verifies keys", func(t *testing.T) {
				wantState(t, verifyIn(t, e, byKey, Trust{Keys: []string{pubPath}}), StateVerified)
			})
		})
	}
}

func TestTamperedLogEntryIsInvalid(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			e := newTestEnv(t)
			img := e.reg.pushImage(t, e.repo)
			signer := e.keylessSigner(t, testSubject, testIssuer)
			// Entries logged by someone else's Rekor: the SET does not verify
			// against the configured root.
			real := e.ss
			e.ss = newTestSigstore(t)
			e.ss.caCert, e.ss.caKey = real.caCert, real.caKey
			f.sign(e, t, img, signer, true)
			r := verifyIn(t, e, img, Trust{
				Identities:  []Identity{{Issuer: testIssuer, Subject: testSubject}},
				TrustedRoot: real.rootPath, RequireTlog: true,
			})
			wantState(t, r, StateInvalid)
		})
	}
}

func TestEverySignerIsListed(t *testing.T) {
	e := newTestEnv(t)
	img := e.reg.pushImage(t, e.repo)
	k1, p1 := newKeySigner(t)
	k2, p2 := newKeySigner(t)
	_, unused := newKeySigner(t)
	e.signTag(t, img, k1, true)
	e.signTag(t, img, k2, true)
	e.signBundle(t, img, e.keylessSigner(t, testSubject, testIssuer), true)
	r := verifyIn(t, e, img, Trust{
		Keys:        []string{unused, p1, p2},
		Identities:  []Identity{{IssuerRegexp: `^https://token\.actions\.`, Subject: testSubject}},
		TrustedRoot: e.ss.rootPath, RequireTlog: true,
	})
	wantState(t, r, StateVerified)
	wantSigners(t, r,
		Signer{KeyID: k1.keyID, Format: FormatCosignTag},
		Signer{KeyID: k2.keyID, Format: FormatCosignTag},
		Signer{Issuer: testIssuer, Subject: testSubject, Format: FormatBundle},
	)
}

func TestIndexes(t *testing.T) {
	for _, f := range formats {
		t.Run(f.name, func(t *testing.T) {
			e := newTestEnv(t)
			signer, pubPath := newKeySigner(t)
			trust := Trust{Keys: []string{pubPath}, TrustedRoot: e.ss.rootPath, RequireTlog: true}
			ctx := context.Background()

			t.Run("unsigned index with signed child", func(t *testing.T) {
				idx, children := e.reg.pushIndex(t, e.repo)
				f.sign(e, t, children[0], signer, true)
				r := VerifyWithIndex(ctx, e.reg.client(), e.repo, children[0], idx, trust)
				wantState(t, r, StateVerified)
				if r.CoveredBy != "" {
					t.Errorf("CoveredBy = %q for a child with its own signature", r.CoveredBy)
				}
				wantState(t, verifyIn(t, e, idx, trust), StateUnsigned)
				wantState(t, VerifyWithIndex(ctx, e.reg.client(), e.repo, children[1], idx, trust), StateUnsigned)
			})
			t.Run("signed index covers its unsigned children only", func(t *testing.T) {
				idx, children := e.reg.pushIndex(t, e.repo)
				f.sign(e, t, idx, signer, true)
				wantState(t, verifyIn(t, e, children[0], trust), StateUnsigned)
				r := VerifyWithIndex(ctx, e.reg.client(), e.repo, children[0], idx, trust)
				wantState(t, r, StateVerified)
				if r.CoveredBy != idx {
					t.Errorf("CoveredBy = %q, want %q", r.CoveredBy, idx)
				}
				wantSigners(t, r, Signer{KeyID: signer.keyID, Format: f.name})

				stranger := e.reg.pushImage(t, e.repo)
				r = VerifyWithIndex(ctx, e.reg.client(), e.repo, stranger, idx, trust)
				wantState(t, r, StateUnsigned)
				if r.CoveredBy != "" {
					t.Errorf("unlisted digest inherited the index signature: %+v", r)
				}
			})
			t.Run("invalid index signature does not cover", func(t *testing.T) {
				idx, children := e.reg.pushIndex(t, e.repo)
				f.sign(e, t, idx, signer, true)
				_, otherPath := newKeySigner(t)
				r := VerifyWithIndex(ctx, e.reg.client(), e.repo, children[1], idx, Trust{Keys: []string{otherPath}})
				wantState(t, r, StateInvalid, "index "+idx)
			})
		})
	}
}

func TestErrors(t *testing.T) {
	e := newTestEnv(t)
	_, pubPath := newKeySigner(t)
	img := e.reg.pushImage(t, e.repo)
	ctx := context.Background()
	cases := []struct {
		name  string
		reg   Registry
		trust Trust
		want  string
	}{
		{"registry down", failingRegistry{}, Trust{Keys: []string{pubPath}}, errUpstreamDown.Error()},
		{"no trust configured", e.reg.client(), Trust{}, "no keys"},
		{"missing key file", e.reg.client(), Trust{Keys: []string{"/nonexistent/cosign.pub"}}, "read key"},
		{"identity without root", e.reg.client(), Trust{Identities: []Identity{{Issuer: testIssuer, Subject: testSubject}}}, "trusted_root"},
		{"tlog without root", e.reg.client(), Trust{Keys: []string{pubPath}, RequireTlog: true}, "trusted_root"},
		{"identity matching anyone", e.reg.client(), Trust{Identities: []Identity{{Issuer: testIssuer}}, TrustedRoot: e.ss.rootPath}, "subject"},
		{"bad regexp", e.reg.client(), Trust{Identities: []Identity{{Issuer: testIssuer, SubjectRegexp: "("}}, TrustedRoot: e.ss.rootPath}, "regexp"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Verify(ctx, c.reg, e.repo, img, c.trust)
			wantState(t, r, StateError, c.want)
		})
	}
	t.Run("bad digest", func(t *testing.T) {
		wantState(t, Verify(ctx, e.reg.client(), e.repo, "sha256:../../x", Trust{Keys: []string{pubPath}}), StateError, "digest")
	})
}
