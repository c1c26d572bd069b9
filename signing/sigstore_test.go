package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
	ct "github.com/google/certificate-transparency-go"
	cttls "github.com/google/certificate-transparency-go/tls"
	ctx509 "github.com/google/certificate-transparency-go/x509"
	"github.com/google/certificate-transparency-go/x509util"
	"github.com/sigstore/rekor/pkg/util"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// testSigstore is a private sigstore deployment minted for one test: a
// Fulcio-like CA, a CT log and a Rekor log, with their public halves written
// to a trusted_root.json exactly as a real deployment publishes them. It
// issues certificates with embedded SCTs and Rekor v1 entries with a signed
// entry timestamp (SET) and an inclusion proof, all verifiable offline.
type testSigstore struct {
	caCert   *x509.Certificate
	caKey    *ecdsa.PrivateKey
	ctKey    *ecdsa.PrivateKey
	rekorKey *ecdsa.PrivateKey
	rootPath string
}

func newTestSigstore(t *testing.T) *testSigstore {
	t.Helper()
	now := time.Now()
	s := &testSigstore{caKey: newKey(t), ctKey: newKey(t), rekorKey: newKey(t)}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test-fulcio", Organization: []string{"portcullis-test"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, s.caKey.Public(), s.caKey)
	if err != nil {
		t.Fatal(err)
	}
	if s.caCert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}

	s.rootPath = s.writeRoot(t, true)
	return s
}

// writeRoot writes the deployment's trusted_root.json, with or without its CT
// log (a private CA without certificate transparency publishes none).
func (s *testSigstore) writeRoot(t *testing.T, withCT bool) string {
	t.Helper()
	start := s.caCert.NotBefore
	ctlogs := map[string]*root.TransparencyLog{}
	if withCT {
		ctID, ctHex := logID(t, s.ctKey.Public())
		ctlogs[ctHex] = &root.TransparencyLog{
			BaseURL: "https://ctfe.test", ID: ctID, ValidityPeriodStart: start,
			HashFunc: crypto.SHA256, PublicKey: s.ctKey.Public(), SignatureHashFunc: crypto.SHA256,
		}
	}
	rekorID, rekorHex := logID(t, s.rekorKey.Public())
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01,
		[]root.CertificateAuthority{&root.FulcioCertificateAuthority{
			Root: s.caCert, URI: "https://fulcio.test", ValidityPeriodStart: start,
		}},
		ctlogs,
		nil,
		map[string]*root.TransparencyLog{rekorHex: {
			BaseURL: "https://rekor.test", ID: rekorID, ValidityPeriodStart: start,
			HashFunc: crypto.SHA256, PublicKey: s.rekorKey.Public(), SignatureHashFunc: crypto.SHA256,
		}},
	)
	if err != nil {
		t.Fatal(err)
	}
	js, err := tr.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "trusted_root.json")
	if err := os.WriteFile(path, js, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// logID is the RFC 6962 log id: SHA-256 of the log's PKIX public key.
func logID(t *testing.T, pub crypto.PublicKey) ([]byte, string) {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return sum[:], hex.EncodeToString(sum[:])
}

// Fulcio's OIDC issuer extensions: .1 holds the raw string (read by cosign's
// legacy path), .8 a DER UTF8String (read by sigstore-go).
var (
	oidIssuerV1 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 1}
	oidIssuerV2 = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 57264, 1, 8}
	oidSCTList  = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11129, 2, 4, 2}
)

// leaf issues a ten-minute code-signing certificate for an e-mail subject,
// as Fulcio does after an OIDC login, with an SCT from ctKey embedded (none if
// ctKey is nil). The SCT signs the certificate's TBS without the SCT
// extension (RFC 6962 §3.3), which is what verifiers rebuild by removing it.
func (s *testSigstore) leaf(t *testing.T, subject, issuer string, ctKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey(t)
	issuerV2, err := asn1.MarshalWithParams(issuer, "utf8")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(now.UnixNano()),
		NotBefore:      now.Add(-time.Minute),
		NotAfter:       now.Add(10 * time.Minute),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		EmailAddresses: []string{subject},
		ExtraExtensions: []pkix.Extension{
			{Id: oidIssuerV1, Value: []byte(issuer)},
			{Id: oidIssuerV2, Value: issuerV2},
		},
	}
	pre, err := x509.CreateCertificate(rand.Reader, tmpl, s.caCert, key.Public(), s.caKey)
	if err != nil {
		t.Fatal(err)
	}
	preCert, err := x509.ParseCertificate(pre)
	if err != nil {
		t.Fatal(err)
	}
	if ctKey == nil {
		return preCert, key
	}

	ctID, _ := logID(t, ctKey.Public())
	sct := ct.SignedCertificateTimestamp{SCTVersion: ct.V1, Timestamp: uint64(now.UnixMilli())}
	copy(sct.LogID.KeyID[:], ctID)
	leaf := ct.MerkleTreeLeaf{Version: ct.V1, LeafType: ct.TimestampedEntryLeafType,
		TimestampedEntry: &ct.TimestampedEntry{
			EntryType: ct.PrecertLogEntryType, Timestamp: sct.Timestamp,
			PrecertEntry: &ct.PreCert{
				IssuerKeyHash:  sha256.Sum256(s.caCert.RawSubjectPublicKeyInfo),
				TBSCertificate: preCert.RawTBSCertificate,
			},
		}}
	input, err := ct.SerializeSCTSignatureInput(sct, ct.LogEntry{Leaf: leaf})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(input)
	sig, err := ecdsa.SignASN1(rand.Reader, ctKey, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sct.Signature = ct.DigitallySigned{
		Algorithm: cttls.SignatureAndHashAlgorithm{Hash: cttls.SHA256, Signature: cttls.ECDSA},
		Signature: sig,
	}
	list, err := x509util.MarshalSCTsIntoSCTList([]*ct.SignedCertificateTimestamp{&sct})
	if err != nil {
		t.Fatal(err)
	}
	listBytes, err := cttls.Marshal(*list)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := asn1.Marshal(listBytes)
	if err != nil {
		t.Fatal(err)
	}
	// Last, so removing it yields exactly the TBS the SCT signed.
	tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidSCTList, Value: ext})
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.caCert, key.Public(), s.caKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	// Guard the construction itself: the TBS must round-trip.
	if ctc, err := ctx509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	} else if tbs, err := ctx509.RemoveSCTList(ctc.RawTBSCertificate); err != nil || !bytes.Equal(tbs, preCert.RawTBSCertificate) {
		t.Fatalf("SCT construction: TBS without SCT differs from the signed one (%v)", err)
	}
	return cert, key
}

// rekorEntry is a Rekor v1 log entry as clients receive it: the canonical
// body, its place in a one-leaf tree, a signed entry timestamp and an
// inclusion proof with a signed checkpoint.
type rekorEntry struct {
	body           []byte
	logID          []byte
	integratedTime int64
	set            []byte
	rootHash       []byte
	checkpoint     string
}

// logEntry "uploads" a canonical Rekor body to the test log.
func (s *testSigstore) logEntry(t *testing.T, body []byte) rekorEntry {
	t.Helper()
	id, idHex := logID(t, s.rekorKey.Public())
	e := rekorEntry{body: body, logID: id, integratedTime: time.Now().Unix()}
	payload, err := json.Marshal(map[string]any{
		"body": base64.StdEncoding.EncodeToString(body), "integratedTime": e.integratedTime,
		"logIndex": 0, "logID": idHex,
	})
	if err != nil {
		t.Fatal(err)
	}
	canon, err := jsoncanonicalizer.Transform(payload)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(canon)
	if e.set, err = ecdsa.SignASN1(rand.Reader, s.rekorKey, sum[:]); err != nil {
		t.Fatal(err)
	}
	// A one-leaf Merkle tree: the root is the leaf hash, the proof is empty.
	leaf := sha256.Sum256(append([]byte{0}, body...))
	e.rootHash = leaf[:]
	signer, err := signature.LoadECDSASignerVerifier(s.rekorKey, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := util.CreateAndSignCheckpoint(context.Background(), "rekor.test", 1, 1, e.rootHash, signer)
	if err != nil {
		t.Fatal(err)
	}
	e.checkpoint = string(cp)
	return e
}

// canonicalJSON marshals v in RFC 8785 form, as Rekor stores entry bodies.
func canonicalJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsoncanonicalizer.Transform(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// hashedRekordBody is the Rekor body cosign's legacy signatures log: the
// payload hash, the signature and the signer's certificate or key (PEM).
func hashedRekordBody(t *testing.T, payload, sig, signerPEM []byte) []byte {
	t.Helper()
	sum := sha256.Sum256(payload)
	return canonicalJSON(t, map[string]any{
		"apiVersion": "0.0.1", "kind": "hashedrekord",
		"spec": map[string]any{
			"data": map[string]any{"hash": map[string]any{"algorithm": "sha256", "value": hex.EncodeToString(sum[:])}},
			"signature": map[string]any{
				"content":   base64.StdEncoding.EncodeToString(sig),
				"publicKey": map[string]any{"content": base64.StdEncoding.EncodeToString(signerPEM)},
			},
		},
	})
}

// dsseBody is the Rekor "dsse" v0.0.1 body cosign v3 logs for bundles.
func dsseBody(t *testing.T, envelope, payload, sig, signerPEM []byte) []byte {
	t.Helper()
	envSum, paySum := sha256.Sum256(envelope), sha256.Sum256(payload)
	return canonicalJSON(t, map[string]any{
		"apiVersion": "0.0.1", "kind": "dsse",
		"spec": map[string]any{
			"envelopeHash": map[string]any{"algorithm": "sha256", "value": hex.EncodeToString(envSum[:])},
			"payloadHash":  map[string]any{"algorithm": "sha256", "value": hex.EncodeToString(paySum[:])},
			"signatures": []any{map[string]any{
				"signature": base64.StdEncoding.EncodeToString(sig),
				"verifier":  base64.StdEncoding.EncodeToString(signerPEM),
			}},
		},
	})
}

func pemCert(t *testing.T, c *x509.Certificate) []byte {
	t.Helper()
	p, err := cryptoutils.MarshalCertificateToPEM(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func pemPublicKey(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	p, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
