package signing

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/cosign/v2/pkg/types"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	sgbundle "github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// testEnv is one test's world: a loopback registry, a private sigstore, and a
// repository to push images to.
type testEnv struct {
	reg  *testRegistry
	ss   *testSigstore
	repo string
	// tamperEntry, if set, alters each bundle's log entry before publishing.
	tamperEntry func(*protorekor.TransparencyLogEntry)
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	return &testEnv{reg: newTestRegistry(t), ss: newTestSigstore(t), repo: "acme/api"}
}

// testSigner signs like a cosign user: with a key pair, or keyless with a
// short-lived certificate from the test CA.
type testSigner struct {
	sv    signature.SignerVerifier
	pub   crypto.PublicKey
	cert  *x509.Certificate // nil for key signers
	keyID string            // set for key signers
}

// newKeySigner makes a cosign key pair (ECDSA P-256, as `cosign
// generate-key-pair`) and writes cosign.pub to a file.
func newKeySigner(t *testing.T) (testSigner, string) {
	t.Helper()
	priv, err := cosign.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return keySigner(t, sv)
}

// keySigner wraps any signer and writes its public key to a PEM file.
func keySigner(t *testing.T, sv signature.SignerVerifier) (testSigner, string) {
	t.Helper()
	pub, err := sv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cosign.pub")
	if err := os.WriteFile(path, pemPublicKey(t, pub), 0o600); err != nil {
		t.Fatal(err)
	}
	id, err := KeyID(pub)
	if err != nil {
		t.Fatal(err)
	}
	return testSigner{sv: sv, pub: pub, keyID: id}, path
}

func (e *testEnv) keylessSigner(t *testing.T, subject, issuer string) testSigner {
	t.Helper()
	return e.keylessSignerSCT(t, subject, issuer, e.ss.ctKey)
}

// keylessSignerSCT is keylessSigner with the SCT made by ctKey (none if nil).
func (e *testEnv) keylessSignerSCT(t *testing.T, subject, issuer string, ctKey *ecdsa.PrivateKey) testSigner {
	t.Helper()
	cert, key := e.ss.leaf(t, subject, issuer, ctKey)
	sv, err := signature.LoadECDSASignerVerifier(key, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return testSigner{sv: sv, pub: key.Public(), cert: cert}
}

// identityPEM is what Rekor records as the signer: certificate or key.
func (s testSigner) identityPEM(t *testing.T) []byte {
	if s.cert != nil {
		return pemCert(t, s.cert)
	}
	return pemPublicKey(t, s.pub)
}

func (s testSigner) sign(t *testing.T, msg []byte) []byte {
	t.Helper()
	sig, err := s.sv.SignMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// signTag adds a legacy cosign signature of digest to its .sig tag, the way
// `cosign sign` (v2) does: simple-signing payload, signature and certificate
// in annotations, Rekor bundle annotation when logged.
func (e *testEnv) signTag(t *testing.T, digest string, s testSigner, logged bool) {
	t.Helper()
	ref := e.reg.digestRef(t, e.repo, digest)
	pl, err := payload.Cosign{Image: ref}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	sig := s.sign(t, pl)
	var opts []static.Option
	if s.cert != nil {
		opts = append(opts, static.WithCertChain(pemCert(t, s.cert), pemCert(t, e.ss.caCert)))
	}
	if logged {
		le := e.ss.logEntry(t, hashedRekordBody(t, pl, sig, s.identityPEM(t)))
		opts = append(opts, static.WithBundle(&cbundle.RekorBundle{
			SignedEntryTimestamp: le.set,
			Payload: cbundle.RekorPayload{
				Body: base64.StdEncoding.EncodeToString(le.body), IntegratedTime: le.integratedTime,
				LogIndex: 0, LogID: hex.EncodeToString(le.logID),
			},
		}))
	}
	ociSig, err := static.NewSignature(pl, base64.StdEncoding.EncodeToString(sig), opts...)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := ociremote.SignatureTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	existing, err := ociremote.Signatures(tag)
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := mutate.AppendSignatures(existing, false, ociSig)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, sigs); err != nil {
		t.Fatal(err)
	}
}

// bundleFor makes a sigstore v0.3 bundle signing digest, the way `cosign
// sign` (v3) does: a DSSE envelope over an in-toto statement with cosign's
// sign predicate, certificate or key hint, and a Rekor "dsse" entry with SET
// and inclusion proof when logged.
func (e *testEnv) bundleFor(t *testing.T, digest string, s testSigner, logged bool) []byte {
	t.Helper()
	const payloadType = "application/vnd.in-toto+json"
	stmt := canonicalJSON(t, map[string]any{
		"_type": "https://in-toto.io/Statement/v1",
		"subject": []any{map[string]any{
			"name":   e.reg.host + "/" + e.repo,
			"digest": map[string]string{"sha256": strings.TrimPrefix(digest, "sha256:")},
		}},
		"predicateType": types.CosignSignPredicateType,
		"predicate":     map[string]any{},
	})
	pae := fmt.Appendf(nil, "DSSEv1 %d %s %d %s", len(payloadType), payloadType, len(stmt), stmt)
	sig := s.sign(t, pae)
	env := &protodsse.Envelope{Payload: stmt, PayloadType: payloadType, Signatures: []*protodsse.Signature{{Sig: sig}}}

	vm := &protobundle.VerificationMaterial{}
	if s.cert != nil {
		vm.Content = &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: s.cert.Raw}}
	} else {
		vm.Content = &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: s.keyID}}
	}
	if logged {
		envJSON := canonicalJSON(t, map[string]any{
			"payload": base64.StdEncoding.EncodeToString(stmt), "payloadType": payloadType,
			"signatures": []any{map[string]string{"sig": base64.StdEncoding.EncodeToString(sig)}},
		})
		le := e.ss.logEntry(t, dsseBody(t, envJSON, stmt, sig, s.identityPEM(t)))
		vm.TlogEntries = []*protorekor.TransparencyLogEntry{{
			LogIndex:          0,
			LogId:             &protocommon.LogId{KeyId: le.logID},
			KindVersion:       &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"},
			IntegratedTime:    le.integratedTime,
			InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: le.set},
			InclusionProof:    &protorekor.InclusionProof{LogIndex: 0, RootHash: le.rootHash, TreeSize: 1, Checkpoint: &protorekor.Checkpoint{Envelope: le.checkpoint}},
			CanonicalizedBody: le.body,
		}}
		if e.tamperEntry != nil {
			e.tamperEntry(vm.TlogEntries[0])
		}
	}
	b, err := sgbundle.NewBundle(&protobundle.Bundle{
		MediaType:            BundleArtifactType,
		VerificationMaterial: vm,
		Content:              &protobundle.Bundle_DsseEnvelope{DsseEnvelope: env},
	})
	if err != nil {
		t.Fatal(err)
	}
	js, err := b.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// attachBundle publishes a bundle as a referrer of digest with cosign's own
// writer (ociremote.WriteAttestationNewBundleFormat).
func (e *testEnv) attachBundle(t *testing.T, digest string, bundleJSON []byte) {
	t.Helper()
	if err := ociremote.WriteAttestationNewBundleFormat(e.reg.digestRef(t, e.repo, digest), bundleJSON, types.CosignSignPredicateType); err != nil {
		t.Fatal(err)
	}
}

func (e *testEnv) signBundle(t *testing.T, digest string, s testSigner, logged bool) {
	t.Helper()
	e.attachBundle(t, digest, e.bundleFor(t, digest, s, logged))
}

// copyTag copies the .sig manifest of one digest to another's .sig tag: a
// signature replayed onto an image it was not made for.
func (e *testEnv) copyTag(t *testing.T, from, to string) {
	t.Helper()
	src, err := ociremote.SignatureTag(e.reg.digestRef(t, e.repo, from))
	if err != nil {
		t.Fatal(err)
	}
	dst, err := ociremote.SignatureTag(e.reg.digestRef(t, e.repo, to))
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(dst, desc); err != nil {
		t.Fatal(err)
	}
}
