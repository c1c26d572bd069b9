package scanner

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	cdx "github.com/CycloneDX/cyclonedx-go"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdxlib"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

// sbomInventory has OS and language packages, and the same npm package in
// two places (two components, one purl).
func sbomInventory(t *testing.T) *Inventory {
	t.Helper()
	lodash := fixture(t, "npm/lodash-4.17.20/package.json")
	return scan(t, image(t, gzLayer(t,
		file("etc/os-release", debianOSRelease),
		file("var/lib/dpkg/status", fixture(t, "dpkg/status")),
		file("app/node_modules/lodash/package.json", lodash),
		file("srv/node_modules/lodash/package.json", lodash),
	)))
}

func TestWriteCycloneDX(t *testing.T) {
	t.Parallel()
	inv := sbomInventory(t)
	lodash := vulndb.Finding{ID: "GHSA-35jh-r3h4-6jhm", Aliases: []string{"CVE-2021-23337"}, Summary: "Command Injection in lodash",
		Ecosystem: "npm", Package: "lodash", InstalledVersion: "4.17.20", FixedVersions: []string{"4.17.21"},
		Severity: "HIGH", Score: 7.2, CVSSVector: "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H"}
	findings := []vulndb.Finding{
		lodash, lodash, // one finding per copy of lodash
		{ID: "DEBIAN-CVE-2023-0001", Ecosystem: "Debian:12", Package: "libssl3", InstalledVersion: "3.0.19-1~deb12u2", Severity: "UNKNOWN"},
	}
	var buf bytes.Buffer
	if err := WriteCycloneDX(&buf, inv, findings); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(buf.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if raw["specVersion"] != "1.6" || raw["bomFormat"] != "CycloneDX" {
		t.Errorf("specVersion %v, bomFormat %v", raw["specVersion"], raw["bomFormat"])
	}
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(buf.Bytes()), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatalf("decode: %v", err)
	}
	if bom.Metadata == nil || bom.Metadata.Component == nil || bom.Metadata.Component.Name != inv.ImageDigest {
		t.Errorf("metadata component = %+v", bom.Metadata)
	}
	refs := map[string]cdx.Component{}
	libraries := 0
	for _, c := range *bom.Components {
		if _, dup := refs[c.BOMRef]; dup {
			t.Errorf("duplicate bom-ref %s", c.BOMRef)
		}
		refs[c.BOMRef] = c
		if c.Type == cdx.ComponentTypeLibrary {
			libraries++
			if c.PackageURL == "" {
				t.Errorf("component %s has no purl", c.Name)
			}
		}
	}
	if libraries != len(inv.Packages) {
		t.Errorf("%d library components for %d packages", libraries, len(inv.Packages))
	}
	if os := refs["os:debian@12"]; os.Type != cdx.ComponentTypeOS {
		t.Errorf("no operating-system component: %+v", os)
	}
	if bom.Vulnerabilities == nil || len(*bom.Vulnerabilities) != 2 {
		t.Fatalf("vulnerabilities = %+v", bom.Vulnerabilities)
	}
	v := (*bom.Vulnerabilities)[0]
	if v.ID != "GHSA-35jh-r3h4-6jhm" || v.Ratings == nil || (*v.Ratings)[0].Severity != cdx.SeverityHigh ||
		(*v.Ratings)[0].Method != cdx.ScoringMethodCVSSv31 || *(*v.Ratings)[0].Score != 7.2 {
		t.Errorf("vulnerability = %+v ratings %+v", v, v.Ratings)
	}
	if v.Affects == nil || len(*v.Affects) != 2 {
		t.Fatalf("lodash finding affects %+v, want both copies", v.Affects)
	}
	for _, a := range *v.Affects {
		if c, ok := refs[a.Ref]; !ok || c.PackageURL != "pkg:npm/lodash@4.17.20" {
			t.Errorf("affects %s, which is not a lodash component", a.Ref)
		}
	}
	if a := (*bom.Vulnerabilities)[1].Affects; a == nil || len(*a) != 1 || refs[(*a)[0].Ref].Name != "libssl3" {
		t.Errorf("libssl3 finding affects %+v", a)
	}

	// Without findings there is no vulnerabilities section.
	buf.Reset()
	if err := WriteCycloneDX(&buf, inv, nil); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte(`"vulnerabilities"`)) {
		t.Error("vulnerabilities section without findings")
	}
}

func TestWriteSPDX(t *testing.T) {
	t.Parallel()
	inv := sbomInventory(t)
	var buf bytes.Buffer
	if err := WriteSPDX(&buf, inv); err != nil {
		t.Fatal(err)
	}
	doc, err := spdxjson.Read(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := spdxlib.ValidateDocument(doc); err != nil {
		t.Errorf("invalid document: %v", err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.DataLicense != "CC0-1.0" {
		t.Errorf("version %s, data licence %s", doc.SPDXVersion, doc.DataLicense)
	}
	described, err := spdxlib.GetDescribedPackageIDs(doc)
	if err != nil || len(described) != 1 || described[0] != "Image" {
		t.Errorf("described = %v, %v", described, err)
	}
	purls := map[string]bool{}
	for _, p := range doc.Packages {
		if p.PrimaryPackagePurpose != "LIBRARY" {
			continue
		}
		for _, r := range p.PackageExternalReferences {
			if r.Category == "PACKAGE-MANAGER" && r.RefType == "purl" {
				purls[r.Locator] = true
			}
		}
	}
	for _, p := range inv.Packages {
		if !purls[p.PURL] {
			t.Errorf("no purl external reference for %s", p.PURL)
		}
	}
	// image + OS + packages, and the image contains each of the others.
	if len(doc.Packages) != len(inv.Packages)+2 || len(doc.Relationships) != len(inv.Packages)+2 {
		t.Errorf("%d packages, %d relationships for %d inventory packages", len(doc.Packages), len(doc.Relationships), len(inv.Packages))
	}
}

// Malware and secret findings are in the vulnerabilities section with
// their kind; a file finding affects the image and says where it is; a
// secret's fingerprint stays out.
func TestWriteCycloneDXKinds(t *testing.T) {
	t.Parallel()
	inv := sbomInventory(t)
	fingerprint := "sha256:" + strings.Repeat("12", 32)
	findings := []vulndb.Finding{
		{Kind: vulndb.KindMalware, ID: "MAL-2025-191025", Ecosystem: "npm", Package: "lodash", InstalledVersion: "4.17.20", Severity: "CRITICAL"},
		{Kind: vulndb.KindMalware, ID: "Eicar-Test-Signature", Path: "/tmp/eicar.com", Layer: "sha256:aa", SHA256: "bb", Severity: "CRITICAL"},
		{Kind: vulndb.KindSecret, ID: "secret/private-key", Path: "/app/.env", Line: 3, Layer: "sha256:cc", Fingerprint: fingerprint, Severity: "HIGH"},
		{ID: "CVE-2024-1", Ecosystem: "npm", Package: "lodash", InstalledVersion: "4.17.20", Severity: "LOW"},
	}
	var buf bytes.Buffer
	if err := WriteCycloneDX(&buf, inv, findings); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes(), []byte(fingerprint)) {
		t.Error("the SBOM holds a secret's fingerprint")
	}
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(bytes.NewReader(buf.Bytes()), cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatalf("decode: %v", err)
	}
	byID := map[string]cdx.Vulnerability{}
	for _, v := range *bom.Vulnerabilities {
		byID[v.ID] = v
	}
	props := func(v cdx.Vulnerability) map[string]string {
		m := map[string]string{}
		if v.Properties != nil {
			for _, p := range *v.Properties {
				m[p.Name] = p.Value
			}
		}
		return m
	}
	mal := byID["MAL-2025-191025"]
	if props(mal)[propFindingKind] != "malware" || mal.CWEs == nil || (*mal.CWEs)[0] != 506 || mal.Source.URL != "https://osv.dev/vulnerability/MAL-2025-191025" ||
		mal.Affects == nil || len(*mal.Affects) == 0 || !strings.Contains((*mal.Affects)[0].Ref, "lodash") {
		t.Errorf("malicious package: %+v", mal)
	}
	eicar := byID["Eicar-Test-Signature"]
	if p := props(eicar); p[propFindingKind] != "malware" || p[propFindingPath] != "/tmp/eicar.com" || p[propFindingLayer] != "sha256:aa" || p[propFindingSHA256] != "bb" ||
		eicar.Source.URL != "" || eicar.Affects == nil || len(*eicar.Affects) != 1 || (*eicar.Affects)[0].Ref != inv.ImageDigest {
		t.Errorf("malware file: %+v %v", eicar, props(eicar))
	}
	secret := byID["secret/private-key"]
	if p := props(secret); p[propFindingKind] != "secret" || p[propFindingPath] != "/app/.env" {
		t.Errorf("secret: %+v", secret)
	}
	if byID["CVE-2024-1"].Properties != nil {
		t.Errorf("a vulnerability has a kind: %+v", byID["CVE-2024-1"])
	}
}
