package e2e

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	cbundle "github.com/sigstore/cosign/v2/pkg/cosign/bundle"
	"github.com/sigstore/cosign/v2/pkg/oci/empty"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/cosign/v2/pkg/types"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"

	"github.com/portcullis/portcullis/test/clients"
	"github.com/portcullis/portcullis/test/fixtures"
	"github.com/portcullis/portcullis/test/testregistry"
)

const (
	verdictPredicate    = "https://portcullis.dev/attestation/verdict/v1"
	cyclonedxPredicate  = "https://cyclonedx.org/bom"
	provenancePredicate = "https://slsa.dev/provenance/v0.2"
)

// signingKey writes a password-protected cosign key pair for the proxy and
// returns the config lines that use it and the public key's PEM.
func signingKey(t *testing.T) (config []string, publicPEM []byte) {
	t.Helper()
	keys, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("s3cret"), nil })
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "cosign.key")
	if err := os.WriteFile(keyFile, keys.PrivateBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PORTCULLIS_TEST_KEY_PASSWORD", "s3cret")
	return []string{"signing_key: " + keyFile, "signing_key_password_env: PORTCULLIS_TEST_KEY_PASSWORD"}, keys.PublicBytes
}

func verifierFromPEM(t *testing.T, pemBytes []byte) signature.Verifier {
	t.Helper()
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// upstreamStatement is an in-toto statement about repo@digest on the
// upstream, signed in a DSSE envelope with a fresh key, as `cosign attest
// --key` makes it.
type upstreamStatement struct {
	ref       name.Digest
	key       crypto.PublicKey
	statement []byte
	envelope  []byte
}

func signUpstreamStatement(t *testing.T, up *testregistry.Registry, repo, digest, predicateType string) upstreamStatement {
	t.Helper()
	priv, err := cosign.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	sv, err := signature.LoadECDSASignerVerifier(priv, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	s := upstreamStatement{key: priv.Public()}
	if s.ref, err = name.NewDigest(up.Host() + "/" + repo + "@" + digest); err != nil {
		t.Fatal(err)
	}
	s.statement, _ = json.Marshal(map[string]any{
		"_type": "https://in-toto.io/Statement/v0.1", "predicateType": predicateType,
		"subject":   []any{map[string]any{"name": up.Host() + "/" + repo, "digest": map[string]string{"sha256": strings.TrimPrefix(digest, "sha256:")}}},
		"predicate": map[string]any{"builder": map[string]string{"id": "https://ci.example/builder"}},
	})
	if s.envelope, err = dsse.WrapSigner(sv, types.IntotoPayloadType).SignMessage(bytes.NewReader(s.statement)); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s upstreamStatement) publicPEM(t *testing.T) []byte {
	t.Helper()
	pemBytes, err := cryptoutils.MarshalPublicKeyToPEM(s.key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBytes
}

// attestUpstream attests repo@digest on the upstream the way `cosign attest
// --key --tlog-upload=false` does (a DSSE envelope in the .att tag) and
// returns the public key's PEM.
func attestUpstream(t *testing.T, up *testregistry.Registry, repo, digest, predicateType string) []byte {
	t.Helper()
	s := signUpstreamStatement(t, up, repo, digest, predicateType)
	att, err := static.NewAttestation(s.envelope, static.WithLayerMediaType(types.DssePayloadType),
		static.WithAnnotations(map[string]string{"predicateType": predicateType}))
	if err != nil {
		t.Fatal(err)
	}
	atts, err := mutate.AppendSignatures(empty.Signatures(), false, att)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := ociremote.AttestationTag(s.ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, atts); err != nil {
		t.Fatal(err)
	}
	return s.publicPEM(t)
}

// verifiedPredicates runs cosign's attestation check through the mirror and
// returns the predicate types of what verified, sorted, and the statements.
func verifiedPredicates(t *testing.T, ref name.Reference, v signature.Verifier) ([]string, map[string]json.RawMessage, error) {
	t.Helper()
	atts, _, err := cosign.VerifyImageAttestations(t.Context(), ref, &cosign.CheckOpts{
		SigVerifier: v, ClaimVerifier: cosign.IntotoSubjectClaimVerifier, IgnoreTlog: true, Offline: true,
	})
	if err != nil {
		return nil, nil, err
	}
	var types []string
	predicates := map[string]json.RawMessage{}
	for _, a := range atts {
		pl, err := a.Payload()
		if err != nil {
			t.Fatal(err)
		}
		var env struct{ Payload string }
		if err := json.Unmarshal(pl, &env); err != nil {
			t.Fatal(err)
		}
		raw, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			PredicateType string          `json:"predicateType"`
			Predicate     json.RawMessage `json:"predicate"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatal(err)
		}
		types = append(types, st.PredicateType)
		predicates[st.PredicateType] = st.Predicate
	}
	slices.Sort(types)
	return types, predicates, nil
}

// signingMirror is a portcullis with a signing key in front of the Alpine
// image, in warn mode, after one pull: the verdict is published. It
// returns the mirror's reference to the image too.
func signingMirror(t *testing.T) (gated, []byte, name.Digest) {
	t.Helper()
	cfg, proxyPEM := signingKey(t)
	g := gateSetupWithUpstream(t, strings.Replace(blockingPolicy, "mode: enforce", "mode: warn", 1), cfg...)
	if r := do(t, "GET", g.pc.URL+"/v2/library/alpine/manifests/3.16.9"); r.status != 200 {
		t.Fatalf("pull: %d %s", r.status, r.body)
	}
	awaitPublished(t, g.pc.URL, "library/alpine", g.manifest, true)
	ref, err := name.NewDigest(strings.TrimPrefix(g.pc.URL, "http://") + "/library/alpine@" + g.manifest)
	if err != nil {
		t.Fatal(err)
	}
	return g, proxyPEM, ref
}

// With a signing key, the verdict and the SBOM are also published as
// in-toto attestations in cosign's .att tag: cosign's attestation check
// through the mirror accepts them with the proxy's key, and the upstream's
// own attestations stay visible and verifiable with the upstream's key.
func TestPublishedAttestationsVerifyWithCosign(t *testing.T) {
	g, proxyPEM, ref := signingMirror(t)
	proxyKey := verifierFromPEM(t, proxyPEM)

	// The upstream has no attestations yet: ours alone.
	got, predicates, err := verifiedPredicates(t, ref, proxyKey)
	if err != nil || !slices.Equal(got, []string{cyclonedxPredicate, verdictPredicate}) {
		t.Fatalf("attestations with the proxy's key: %v, %v", got, err)
	}
	var verdict struct {
		Digest   string `json:"digest"`
		Decision struct {
			Effective string `json:"effective"`
		} `json:"decision"`
	}
	if json.Unmarshal(predicates[verdictPredicate], &verdict) != nil || verdict.Digest != g.manifest || verdict.Decision.Effective != "warn" {
		t.Fatalf("verdict predicate: %s", predicates[verdictPredicate])
	}
	var bom struct {
		BOMFormat  string `json:"bomFormat"`
		Components []any  `json:"components"`
	}
	if json.Unmarshal(predicates[cyclonedxPredicate], &bom) != nil || bom.BOMFormat != "CycloneDX" || len(bom.Components) == 0 {
		t.Fatalf("sbom predicate: %.300s", predicates[cyclonedxPredicate])
	}

	// The upstream attests the image too: both sets are served, each
	// verifying with its own key only.
	upstreamPEM := attestUpstream(t, g.up, "library/alpine", g.manifest, provenancePredicate)
	if got, _, err := verifiedPredicates(t, ref, verifierFromPEM(t, upstreamPEM)); err != nil || !slices.Equal(got, []string{provenancePredicate}) {
		t.Fatalf("attestations with the upstream's key: %v, %v", got, err)
	}
	if got, _, err := verifiedPredicates(t, ref, proxyKey); err != nil || !slices.Equal(got, []string{cyclonedxPredicate, verdictPredicate}) {
		t.Fatalf("attestations with the proxy's key after merge: %v, %v", got, err)
	}
	otherPEM := attestUpstream(t, g.up, "library/other", g.manifest, provenancePredicate)
	if got, _, err := verifiedPredicates(t, ref, verifierFromPEM(t, otherPEM)); err == nil {
		t.Fatalf("a key that attested nothing here verified: %v", got)
	}

	// The merged manifest is a complete image: by digest, with a config
	// listing every layer, like clients that resolve tags first expect.
	tag := "sha256-" + strings.TrimPrefix(g.manifest, "sha256:") + ".att"
	head := do(t, "HEAD", g.pc.URL+"/v2/library/alpine/manifests/"+tag)
	d := head.header.Get("Docker-Content-Digest")
	m := do(t, "GET", g.pc.URL+"/v2/library/alpine/manifests/"+d)
	var man v1.Manifest
	if head.status != 200 || m.status != 200 || sha(m.body) != d || json.Unmarshal(m.body, &man) != nil || len(man.Layers) != 3 {
		t.Fatalf("merged manifest %s: %d/%d %s", d, head.status, m.status, m.body)
	}
	c := do(t, "GET", g.pc.URL+"/v2/library/alpine/blobs/"+man.Config.Digest.String())
	var cf v1.ConfigFile
	if c.status != 200 || json.Unmarshal(c.body, &cf) != nil || len(cf.RootFS.DiffIDs) != 3 {
		t.Fatalf("merged config: %d %s", c.status, c.body)
	}
	for i, l := range man.Layers {
		if cf.RootFS.DiffIDs[i] != l.Digest || l.MediaType != types.DssePayloadType || l.Annotations["predicateType"] == "" {
			t.Errorf("layer %d: %+v (diff id %s)", i, l, cf.RootFS.DiffIDs[i])
		}
	}
}

// The cosign CLI itself, pointed at the mirror and cut off from every
// other address: `cosign verify` checks the upstream's signature and the
// proxy's signature on a published verdict, `cosign verify-attestation`
// checks the proxy's verdict and SBOM and the upstream's provenance, each
// with its own key, and a key that signed nothing fails.
func TestCosignCLIVerifiesThroughTheMirror(t *testing.T) {
	g, proxyPEM, ref := signingMirror(t)
	upstreamSigner := fixtures.SignWithKey(t, g.up, "library/alpine", g.manifest)
	upstreamAttester := writeFile(t, "attester.pub", attestUpstream(t, g.up, "library/alpine", g.manifest, provenancePredicate))
	proxyPub := writeFile(t, "proxy.pub", proxyPEM)
	image := ref.String()
	var idx v1.IndexManifest
	if err := json.Unmarshal(do(t, "GET", g.pc.URL+"/v2/library/alpine/referrers/"+g.manifest).body, &idx); err != nil || len(idx.Manifests) != 2 {
		t.Fatalf("referrers: %+v %v", idx, err)
	}
	verdictArtifact := ""
	for _, m := range idx.Manifests {
		if m.ArtifactType == "application/vnd.portcullis.verdict.v1+json" {
			verdictArtifact = strings.TrimPrefix(g.pc.URL, "http://") + "/library/alpine@" + m.Digest.String()
		}
	}
	offline := []string{"--insecure-ignore-tlog", "--allow-http-registry"}
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
		want string // in the output
	}{
		{"upstream signature", []string{"verify", "--key", upstreamSigner, image}, true, g.manifest},
		{"upstream signature, proxy key", []string{"verify", "--key", proxyPub, image}, false, ""},
		{"published verdict signature", []string{"verify", "--key", proxyPub, verdictArtifact}, true, ""},
		{"verdict attestation", []string{"verify-attestation", "--key", proxyPub, "--type", verdictPredicate, image}, true, ""},
		{"sbom attestation", []string{"verify-attestation", "--key", proxyPub, "--type", "cyclonedx", image}, true, ""},
		{"upstream provenance", []string{"verify-attestation", "--key", upstreamAttester, "--type", "slsaprovenance", image}, true, ""},
		{"verdict, upstream key", []string{"verify-attestation", "--key", upstreamAttester, "--type", verdictPredicate, image}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{tc.args[0]}, offline...), tc.args[1:]...)
			out, err := clients.CosignRun(t.Context(), t, args...)
			if (err == nil) != tc.ok || !strings.Contains(out, tc.want) {
				t.Fatalf("cosign %s: err=%v, want ok=%v\n%s", strings.Join(args, " "), err, tc.ok, out)
			}
			if !tc.ok || tc.args[0] != "verify-attestation" {
				return
			}
			// stdout holds the verified envelopes; ours name the image.
			if !strings.Contains(out, `"payloadType":"application/vnd.in-toto+json"`) {
				t.Fatalf("no envelope printed:\n%s", out)
			}
		})
	}
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	return writeFileIn(t, t.TempDir(), name, string(data))
}

// attestUpstreamBundle attests repo@digest on the upstream the way cosign v3
// does by default (`cosign attest --key --tlog-upload=false`): a sigstore
// bundle holding the DSSE envelope, attached as an OCI 1.1 referrer. It
// returns the public key's PEM.
func attestUpstreamBundle(t *testing.T, up *testregistry.Registry, repo, digest, predicateType string) []byte {
	t.Helper()
	s := signUpstreamStatement(t, up, repo, digest, predicateType)
	pemBytes := s.publicPEM(t)
	b, err := cbundle.MakeNewBundle(s.key, nil, s.statement, s.envelope, pemBytes, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ociremote.WriteAttestationNewBundleFormat(s.ref, b, predicateType); err != nil {
		t.Fatal(err)
	}
	return pemBytes
}

// emptyTrustedRoot is the trusted root a key-only verifier hands cosign's
// bundle path, which insists on one: no CA, no log, nothing to fetch.
func emptyTrustedRoot(t *testing.T) string {
	t.Helper()
	return writeFile(t, "trusted_root.json", []byte(`{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}`))
}

// cosign reads one format per image: sigstore bundles when any referrer is
// one (cosign v3's default), else the legacy tags. Portcullis lists its
// own bundles only when the upstream attaches bundles: an image attested
// the v3 way gets our verdict as a bundle too, and an image signed the
// legacy way keeps its signatures visible (checked above).
func TestAttestationsFollowTheUpstreamsBundleFormat(t *testing.T) {
	g, proxyPEM, ref := signingMirror(t)
	upstreamPEM := attestUpstreamBundle(t, g.up, "library/alpine", g.manifest, provenancePredicate)
	var idx v1.IndexManifest
	if err := json.Unmarshal(do(t, "GET", g.pc.URL+"/v2/library/alpine/referrers/"+g.manifest).body, &idx); err != nil {
		t.Fatal(err)
	}
	bundles := 0
	for _, m := range idx.Manifests {
		if m.ArtifactType == "application/vnd.dev.sigstore.bundle.v0.3+json" {
			bundles++
		}
	}
	if bundles != 3 || len(idx.Manifests) != 5 {
		t.Fatalf("referrers: want the upstream's bundle, our two bundles, verdict and SBOM: %+v", idx.Manifests)
	}

	tr, err := root.NewTrustedRootFromPath(emptyTrustedRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  []byte
		want []string
	}{
		{proxyPEM, []string{cyclonedxPredicate, verdictPredicate}},
		{upstreamPEM, []string{provenancePredicate}},
	} {
		atts, _, err := cosign.VerifyImageAttestations(t.Context(), ref, &cosign.CheckOpts{
			SigVerifier: verifierFromPEM(t, tc.key), ClaimVerifier: cosign.IntotoSubjectClaimVerifier,
			IgnoreTlog: true, Offline: true, NewBundleFormat: true, TrustedMaterial: tr,
		})
		var got []string
		for _, a := range atts {
			pl, _ := a.Payload()
			var env struct{ Payload string }
			_ = json.Unmarshal(pl, &env)
			raw, _ := base64.StdEncoding.DecodeString(env.Payload)
			var st struct {
				PredicateType string `json:"predicateType"`
			}
			_ = json.Unmarshal(raw, &st)
			got = append(got, st.PredicateType)
		}
		slices.Sort(got)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Fatalf("bundles verified: %v, want %v (%v)", got, tc.want, err)
		}
	}

	// And the CLI, which picks the bundle format by itself here.
	trusted := emptyTrustedRoot(t)
	proxyPub, upstreamPub := writeFile(t, "proxy.pub", proxyPEM), writeFile(t, "upstream.pub", upstreamPEM)
	for _, tc := range []struct {
		key, predicate string
		ok             bool
	}{
		{proxyPub, verdictPredicate, true},
		{proxyPub, "cyclonedx", true},
		{upstreamPub, "slsaprovenance", true},
		{upstreamPub, verdictPredicate, false},
	} {
		out, err := clients.CosignRun(t.Context(), t, "verify-attestation", "--insecure-ignore-tlog", "--allow-http-registry",
			"--trusted-root", trusted, "--key", tc.key, "--type", tc.predicate, ref.String())
		if (err == nil) != tc.ok {
			t.Fatalf("cosign verify-attestation --type %s: err=%v, want ok=%v\n%s", tc.predicate, err, tc.ok, out)
		}
	}
}

// When the upstream cannot say what its attestation tag holds, Portcullis
// still serves its own attestations (they stay true); when the tag holds
// something cosign could not read as attestations, the upstream's answer
// is passed on untouched.
func TestAttestationTagWhenTheUpstreamMisbehaves(t *testing.T) {
	g, proxyPEM, ref := signingMirror(t)
	tag := "sha256-" + strings.TrimPrefix(g.manifest, "sha256:") + ".att"

	g.up.Fail(`/manifests/`+tag, http.StatusInternalServerError, -1, "")
	if got, _, err := verifiedPredicates(t, ref, verifierFromPEM(t, proxyPEM)); err != nil || len(got) != 2 {
		t.Fatalf("upstream failing: %v, %v", got, err)
	}

	idx := testregistry.MultiArchIndex(t, "application/vnd.oci.image.index.v1+json", "linux/amd64")
	gg, _, _ := signingMirror(t)
	oddDigest := gg.up.PushIndex(t, "library/alpine", tag, idx).String()
	r := do(t, "GET", gg.pc.URL+"/v2/library/alpine/manifests/"+tag)
	if r.status != 200 || r.header.Get("Docker-Content-Digest") != oddDigest {
		t.Fatalf("odd attestation tag: %d %s, want the upstream's %s", r.status, r.header.Get("Docker-Content-Digest"), oddDigest)
	}
}
