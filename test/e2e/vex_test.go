package e2e

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	ggcrempty "github.com/google/go-containerregistry/pkg/v1/empty"
	ggcrmutate "github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	ggcrtypes "github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci/empty"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/cosign/v2/pkg/types"

	"github.com/portcullis/portcullis/test/clients"
	"github.com/portcullis/portcullis/test/fixtures"
	"github.com/portcullis/portcullis/test/harness"
)

// vexFor is an OpenVEX document saying the Alpine image's one finding
// (ALPINE-CVE-2023-42366, upstream CVE-2023-42366) does not affect the
// image with digest d.
func vexFor(d, status string) string {
	hex := strings.TrimPrefix(d, "sha256:")
	return `{
  "@context": "https://openvex.dev/ns/v0.2.0",
  "@id": "https://supplier.example/vex/alpine-1",
  "author": "Supplier",
  "timestamp": "2026-11-01T00:00:00Z",
  "version": 1,
  "statements": [{
    "vulnerability": {"name": "CVE-2023-42366"},
    "products": [{"@id": "pkg:oci/alpine@sha256%3A` + hex + `?repository_url=docker.io/library/alpine"}],
    "status": "` + status + `",
    "justification": "vulnerable_code_not_in_execute_path"
  }]
}`
}

// 'portcullis scan --vex' leaves the suppressed finding out of findings,
// lists it under suppressed, counts it in the table, and a document for
// another image changes nothing.
func TestScanWithVEX(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	data := t.TempDir()
	importAlpineDB(t, bin, data)
	archive, _ := fixtures.Alpine(t)
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	mine := writeFile(t, "mine.vex.json", []byte(vexFor(d.String(), "not_affected")))
	other := writeFile(t, "other.vex.json", []byte(vexFor("sha256:"+strings.Repeat("ab", 32), "not_affected")))
	type result struct {
		Findings   []finding `json:"findings"`
		Suppressed []struct {
			ID            string `json:"id"`
			Package       string `json:"package"`
			Document      string `json:"document"`
			Status        string `json:"status"`
			Justification string `json:"justification"`
		} `json:"suppressed"`
	}
	for _, tc := range []struct {
		name       string
		vex        []string
		findings   int
		suppressed int
	}{
		{"no VEX", nil, 2, 0},
		{"VEX for this image", []string{mine}, 0, 2},
		{"VEX for another image", []string{other}, 2, 0},
		{"both", []string{other, mine}, 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"scan", "--data", data, "--archive", archive, "--format", "json"}
			for _, v := range tc.vex {
				args = append(args, "--vex", v)
			}
			out, err := runBinary(t, bin, args...)
			if err != nil {
				t.Fatalf("scan: %v\n%s", err, out)
			}
			var r result
			if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &r); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if len(r.Findings) != tc.findings || len(r.Suppressed) != tc.suppressed {
				t.Fatalf("%d findings, %d suppressed; want %d, %d\n%s", len(r.Findings), len(r.Suppressed), tc.findings, tc.suppressed, out)
			}
			for _, s := range r.Suppressed {
				if s.ID != "ALPINE-CVE-2023-42366" || s.Document != "https://supplier.example/vex/alpine-1" || s.Status != "not_affected" || s.Justification != "vulnerable_code_not_in_execute_path" {
					t.Errorf("suppressed %+v", s)
				}
			}
		})
	}
	out, err := runBinary(t, bin, "scan", "--data", data, "--archive", archive, "--vex", mine)
	if err != nil || !strings.Contains(out, "0 vulnerabilities") || !strings.Contains(out, "2 suppressed by VEX") {
		t.Fatalf("table: %v\n%s", err, out)
	}
	if out, err := runBinary(t, bin, "scan", "--data", data, "--archive", archive, "--vex", writeFile(t, "bad.json", []byte(`{"@context":"x"}`))); err == nil || !strings.Contains(out, "not OpenVEX") {
		t.Fatalf("invalid VEX accepted: %v\n%s", err, out)
	}
}

// scanRecord is the part of /api/v1/scans/{digest} these tests read.
type scanRecord struct {
	Verdict    string    `json:"verdict"`
	Findings   []finding `json:"findings"`
	Suppressed []struct {
		ID       string `json:"id"`
		Document string `json:"document"`
		Origin   string `json:"origin"`
		Status   string `json:"status"`
	} `json:"suppressed"`
	Decision struct {
		VEX []string `json:"vex"`
	} `json:"decision"`
}

func readRecord(t *testing.T, url string) scanRecord {
	t.Helper()
	var rec scanRecord
	if err := json.Unmarshal(do(t, "GET", url).body, &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// waitForVerdict polls the record until its verdict is want.
func waitForVerdict(t *testing.T, url, want string) scanRecord {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec := readRecord(t, url)
		if rec.Verdict == want {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("verdict still %q 30s on, want %q", rec.Verdict, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A VEX document named by the policy file suppresses a finding that
// blocked the image: the policy reload re-decides the stored verdict, the
// image is served, and the record lists the suppressed finding.
func TestPolicyVEXThroughMirror(t *testing.T) {
	g := gateSetupWithUpstream(t, blockingPolicy)
	pull := func() response { return do(t, "GET", g.pc.URL+"/v2/library/alpine/manifests/3.16.9") }
	wantError(t, pull(), http.StatusForbidden, "DENIED")
	recURL := g.pc.URL + "/api/v1/scans/" + g.manifest

	// A document about another image changes nothing.
	dir := filepath.Dir(g.policy)
	if err := os.WriteFile(filepath.Join(dir, "supplier.json"), []byte(vexFor("sha256:"+strings.Repeat("ab", 32), "not_affected")), 0o600); err != nil {
		t.Fatal(err)
	}
	replaceFile(t, g.policy, "vex: {files: [supplier.json]}\n"+blockingPolicy)
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(g.pc.Logs.String(), `"msg":"policy reloaded"`) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("policy with VEX not reloaded")
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantError(t, pull(), http.StatusForbidden, "DENIED")

	// The supplier's document for this image: the VEX content is in the
	// policy version, so changing the file alone re-decides the verdict.
	replaceFile(t, filepath.Join(dir, "supplier.json"), vexFor(g.manifest, "not_affected"))
	rec := waitForVerdict(t, recURL, "allow")
	if len(rec.Findings) != 0 || len(rec.Suppressed) != 2 || rec.Suppressed[0].Document != "https://supplier.example/vex/alpine-1" ||
		rec.Suppressed[0].Status != "not_affected" || rec.Suppressed[0].Origin != "policy:supplier.json" {
		t.Fatalf("record: %+v", rec)
	}
	if r := pull(); r.status != http.StatusOK {
		t.Fatalf("suppressed finding still refuses the pull: %d %s", r.status, r.body)
	}
	// The status API lists it too.
	st := do(t, "GET", g.pc.URL+"/api/v1/images?ref=docker.io/library/alpine:3.16.9")
	if !strings.Contains(string(st.body), `"suppressed"`) || !strings.Contains(string(st.body), "vulnerable_code_not_in_execute_path") {
		t.Fatalf("status API: %d %s", st.status, st.body)
	}
	// A later "affected" statement brings the block back.
	replaceFile(t, filepath.Join(dir, "supplier.json"), strings.Replace(vexFor(g.manifest, "affected"), `"2026-11-01`, `"2026-11-02`, 1))
	waitForVerdict(t, recURL, "block")
}

// A supplier's VEX names the multi-platform index it published: the
// platform image pulled through that index is covered by it.
func TestPolicyVEXNamesTheIndex(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	importAlpineDB(t, bin, data)
	up := startUpstream(t)
	img, d := pushAlpine(t, up)
	idx := ggcrmutate.IndexMediaType(ggcrmutate.AppendManifests(ggcrempty.Index,
		ggcrmutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}}), ggcrtypes.OCIImageIndex)
	up.PushIndex(t, "library/alpine", "multi", idx)
	idxDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	writeFile := func(name, content string) string { return writeFileIn(t, dir, name, content) }
	writeFile("supplier.json", vexFor(idxDigest.String(), "not_affected"))
	policyFile := writeFile("policy.yaml", "vex: {files: [supplier.json]}\n"+blockingPolicy)
	cfg := writeFile("portcullis.yaml", "default_upstream: docker.io\nupstreams: [{name: docker.io, url: "+up.URL()+"}]\npolicy: "+policyFile+"\n")
	pc := harness.StartPortcullis(t, bin, "--config", cfg, "--data", data)

	// Through the index (as clients pull), its platform image is covered.
	if r := do(t, "GET", pc.URL+"/v2/library/alpine/manifests/multi", "Accept", string(ggcrtypes.OCIImageIndex)); r.status != http.StatusOK {
		t.Fatalf("index: %d %s", r.status, r.body)
	}
	if r := do(t, "GET", pc.URL+"/v2/library/alpine/manifests/"+d.String()); r.status != http.StatusOK {
		t.Fatalf("platform image through the index's VEX: %d %s", r.status, r.body)
	}
	if rec := readRecord(t, pc.URL+"/api/v1/scans/"+d.String()); rec.Verdict != "allow" || len(rec.Suppressed) != 2 {
		t.Fatalf("record: %+v", rec)
	}
	// The same image in a repository where no index lists it stays blocked.
	up.Push(t, "other/alpine", "3.16.9", img)
	wantError(t, do(t, "GET", pc.URL+"/v2/other/alpine/manifests/3.16.9"), http.StatusForbidden, "DENIED")
}

// vexGate is gateSetupWithUpstream with tags revalidated at every
// request, so attestations attached upstream during the test are seen at
// once rather than after the default tag TTL.
func vexGate(t *testing.T, policyYAML string) gated {
	t.Helper()
	bin := harness.BuildPortcullis(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	importAlpineDB(t, bin, data)
	up := startUpstream(t)
	_, d := pushAlpine(t, up)
	policyFile := writeFile(t, "policy.yaml", []byte(policyYAML))
	cfg := writeFile(t, "portcullis.yaml", []byte("default_upstream: docker.io\nupstreams: [{name: docker.io, url: "+up.URL()+", tag_ttl: 0s}]\npolicy: "+policyFile+"\n"))
	return gated{pc: harness.StartPortcullis(t, bin, "--config", cfg, "--data", data), up: up, manifest: d.String(), policy: policyFile}
}

// cosignKey writes a cosign key pair (password from COSIGN_PASSWORD) and
// returns the private and public key files.
func cosignKey(t *testing.T, name string) (priv, pub string) {
	t.Helper()
	keys, err := cosign.GenerateKeyPair(func(bool) ([]byte, error) { return []byte("s3cret"), nil })
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, name+".key", keys.PrivateBytes), writeFile(t, name+".pub", keys.PublicBytes)
}

// A VEX attestation (`cosign attest --type openvex`) on the upstream image,
// in cosign's .att tag or (--new-bundle-format) as a sigstore bundle
// referrer, counts only when signed with a key the rule trusts: one signed
// with another key leaves the pull blocked and the record says it was
// ignored; one signed with the rule's key suppresses the finding that
// blocked.
func TestSignedVEXAttestation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		format []string
	}{
		{"att tag", nil},
		{"bundle referrer", []string{"--new-bundle-format"}},
	} {
		t.Run(tc.name, func(t *testing.T) { signedVEXAttestation(t, tc.format) })
	}
}

func signedVEXAttestation(t *testing.T, format []string) {
	trustedKey, trustedPub := cosignKey(t, "supplier")
	otherKey, _ := cosignKey(t, "someone")
	t.Setenv("COSIGN_PASSWORD", "s3cret")
	policyFor := func(name string) string {
		return strings.Replace(strings.Replace(blockingPolicy, "mode: enforce", "mode: enforce\n    signature: {keys: ["+trustedPub+"], tlog: false}", 1),
			"name: no-known-vulnerabilities", "name: "+name, 1)
	}
	g := vexGate(t, policyFor("vex-1"))
	pull := func() response { return do(t, "GET", g.pc.URL+"/v2/library/alpine/manifests/3.16.9") }
	wantError(t, pull(), http.StatusForbidden, "DENIED")
	recURL := g.pc.URL + "/api/v1/scans/" + g.manifest
	image := g.up.Host() + "/library/alpine@" + g.manifest
	predicate := writeFile(t, "vex.json", []byte(vexFor(g.manifest, "not_affected")))
	attest := func(key string) {
		t.Helper()
		args := append([]string{"attest", "--key", key, "--type", "openvex", "--predicate", predicate,
			"--tlog-upload=false", "--allow-http-registry", "--yes"}, format...)
		if out, err := clients.CosignRun(t.Context(), t, append(args, image)...); err != nil {
			t.Fatalf("cosign attest: %v\n%s", err, out)
		}
	}
	// Re-deciding stored verdicts is what a policy change does; the rule's
	// name changes so the policy version does.
	redecide := func(name string) scanRecord {
		t.Helper()
		replaceFile(t, g.policy, policyFor(name))
		deadline := time.Now().Add(30 * time.Second)
		for {
			var rec struct {
				Rule string `json:"rule"`
			}
			if err := json.Unmarshal(do(t, "GET", recURL).body, &rec); err != nil {
				t.Fatal(err)
			}
			if rec.Rule == name {
				return readRecord(t, recURL)
			}
			if time.Now().After(deadline) {
				t.Fatalf("verdict not re-decided under %s", name)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	if format == nil {
		// An attestation nobody signed: a DSSE envelope without signatures.
		unsignedAttestation(t, image, vexFor(g.manifest, "not_affected"))
		rec := redecide("vex-unsigned")
		if rec.Verdict != "block" || len(rec.Suppressed) != 0 || !strings.Contains(strings.Join(rec.Decision.VEX, "\n"), "VEX attestation ignored") {
			t.Fatalf("unsigned VEX: %+v", rec)
		}
	}
	attest(otherKey)
	rec := redecide("vex-2")
	if rec.Verdict != "block" || len(rec.Suppressed) != 0 || !strings.Contains(strings.Join(rec.Decision.VEX, "\n"), "VEX attestation ignored") {
		t.Fatalf("wrongly signed VEX: %+v", rec)
	}
	wantError(t, pull(), http.StatusForbidden, "DENIED")

	attest(trustedKey)
	rec = redecide("vex-3")
	if rec.Verdict != "allow" || len(rec.Suppressed) != 2 || !strings.HasPrefix(rec.Suppressed[0].Origin, "attestation") {
		t.Fatalf("signed VEX: %+v", rec)
	}
	if r := pull(); r.status != http.StatusOK {
		t.Fatalf("pull after signed VEX: %d %s", r.status, r.body)
	}
}

// unsignedAttestation puts an OpenVEX statement about image in its .att
// tag in a DSSE envelope that carries no signature.
func unsignedAttestation(t *testing.T, image, doc string) {
	t.Helper()
	ref, err := name.NewDigest(image)
	if err != nil {
		t.Fatal(err)
	}
	statement, err := json.Marshal(map[string]any{
		"_type": "https://in-toto.io/Statement/v0.1", "predicateType": "https://openvex.dev/ns",
		"subject":   []any{map[string]any{"name": ref.Context().String(), "digest": map[string]string{"sha256": strings.TrimPrefix(ref.DigestStr(), "sha256:")}}},
		"predicate": json.RawMessage(doc),
	})
	if err != nil {
		t.Fatal(err)
	}
	envelope, _ := json.Marshal(map[string]any{"payloadType": types.IntotoPayloadType, "payload": base64.StdEncoding.EncodeToString(statement), "signatures": []any{}})
	att, err := static.NewAttestation(envelope, static.WithLayerMediaType(types.DssePayloadType),
		static.WithAnnotations(map[string]string{"predicateType": "https://openvex.dev/ns"}))
	if err != nil {
		t.Fatal(err)
	}
	atts, err := mutate.AppendSignatures(empty.Signatures(), false, att)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := ociremote.AttestationTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, atts); err != nil {
		t.Fatal(err)
	}
}
