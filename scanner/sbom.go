package scanner

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
	"github.com/google/uuid"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx"
	"github.com/spdx/tools-golang/spdx/v2/common"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

const toolName = "portcullis"

// Property names in CycloneDX, namespaced as the property taxonomy asks.
const (
	propLayer      = "portcullis:layer:digest"
	propLayerIndex = "portcullis:layer:index"
	propType       = "portcullis:package:type"
	propEcosystem  = "portcullis:package:ecosystem"
)

// WriteCycloneDX writes inv as a CycloneDX 1.6 JSON BOM: the image as the
// described component, one library component (with its purl) per package,
// and, when findings are given, a vulnerabilities section whose affects
// point at the components of the matched packages.
func WriteCycloneDX(w io.Writer, inv *Inventory, findings []vulndb.Finding) error {
	bom := cdx.NewBOM()
	bom.SerialNumber = "urn:uuid:" + uuid.NewString()
	bom.Metadata = &cdx.Metadata{
		Timestamp: time.Now().UTC().Format(time.RFC3339),
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{
			Type: cdx.ComponentTypeApplication, Name: toolName, Version: Version,
		}}},
		Component: &cdx.Component{
			BOMRef: inv.ImageDigest,
			Type:   cdx.ComponentTypeContainer,
			Name:   inv.ImageDigest,
		},
	}
	components := []cdx.Component{}
	if inv.OS.ID != "" {
		components = append(components, cdx.Component{
			BOMRef:      "os:" + inv.OS.ID + "@" + inv.OS.VersionID,
			Type:        cdx.ComponentTypeOS,
			Name:        inv.OS.ID,
			Version:     inv.OS.VersionID,
			Description: inv.OS.PrettyName,
		})
	}
	refs := componentRefs(inv.Packages)
	byPackage := map[string][]string{} // ecosystem, name, version -> bom-refs
	for i, p := range inv.Packages {
		props := []cdx.Property{
			{Name: propType, Value: p.Type},
			{Name: propEcosystem, Value: p.Ecosystem},
			{Name: propLayer, Value: p.Layer},
			{Name: propLayerIndex, Value: strconv.Itoa(p.LayerIndex)},
		}
		c := cdx.Component{
			BOMRef:     refs[i],
			Type:       cdx.ComponentTypeLibrary,
			Name:       p.Name,
			Version:    p.Version,
			PackageURL: p.PURL,
			Properties: &props,
			Evidence: &cdx.Evidence{Occurrences: &[]cdx.EvidenceOccurrence{{
				Location: p.Location,
			}}},
		}
		components = append(components, c)
		k := findingKey(p.Ecosystem, p.Name, p.Version)
		byPackage[k] = append(byPackage[k], refs[i])
	}
	bom.Components = &components
	if len(findings) > 0 {
		vulns := cycloneDXVulns(findings, byPackage, inv.ImageDigest)
		bom.Vulnerabilities = &vulns
	}
	enc := cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	if err := enc.EncodeVersion(bom, cdx.SpecVersion1_6); err != nil {
		return fmt.Errorf("encode CycloneDX: %w", err)
	}
	return nil
}

// componentRefs gives every package a unique bom-ref: its purl, made unique
// by the location when the same package sits in several places.
func componentRefs(pkgs []Package) []string {
	refs := make([]string, len(pkgs))
	seen := map[string]bool{}
	for i, p := range pkgs {
		ref := p.PURL
		if ref == "" {
			ref = p.Type + ":" + p.Name + "@" + p.Version
		}
		if seen[ref] {
			ref += "#" + p.Location
		}
		for n := 2; seen[ref]; n++ {
			ref = fmt.Sprintf("%s#%d", ref, n)
		}
		seen[ref] = true
		refs[i] = ref
	}
	return refs
}

func findingKey(ecosystem, name, version string) string {
	return ecosystem + "\x00" + name + "\x00" + version
}

// cycloneDXVulns groups findings by vulnerability id, each affecting the
// components of every package it was found in. Components are found by
// ecosystem, name and version rather than Finding.Query, which is not kept
// when findings are stored: the same package in two places is affected the
// same way.
func cycloneDXVulns(findings []vulndb.Finding, byPackage map[string][]string, imageRef string) []cdx.Vulnerability {
	var out []cdx.Vulnerability
	index := map[string]int{}
	affected := map[string]bool{} // vulnerability id, bom-ref
	for _, f := range findings {
		i, ok := index[f.ID]
		if !ok {
			v := cdx.Vulnerability{
				BOMRef:      f.ID,
				ID:          f.ID,
				Source:      &cdx.Source{Name: "OSV", URL: "https://osv.dev/vulnerability/" + f.ID},
				Description: f.Summary,
				Affects:     &[]cdx.Affects{},
			}
			if f.Kind == vulndb.KindSecret {
				// Not from OSV and in no component: say where, never what.
				v.Source = &cdx.Source{Name: "Portcullis"}
				v.Description = fmt.Sprintf("%s in %s line %d (layer %s)", f.ID, f.Path, f.Line, f.Layer)
			}
			rating := cdx.VulnerabilityRating{Severity: cdxSeverity(f.Severity), Vector: f.CVSSVector}
			if f.Score > 0 {
				score := f.Score
				rating.Score = &score
				rating.Method = cvssMethod(f.CVSSVector)
			}
			v.Ratings = &[]cdx.VulnerabilityRating{rating}
			if len(f.Aliases) > 0 {
				refs := make([]cdx.VulnerabilityReference, 0, len(f.Aliases))
				for _, a := range f.Aliases {
					refs = append(refs, cdx.VulnerabilityReference{ID: a, Source: &cdx.Source{Name: "OSV"}})
				}
				v.References = &refs
			}
			if len(f.FixedVersions) > 0 {
				v.Recommendation = "Upgrade " + f.Package + " to " + strings.Join(f.FixedVersions, " or ")
			}
			describeKind(&v, f) // malware, secrets
			i = len(out)
			index[f.ID] = i
			out = append(out, v)
		}
		affects := out[i].Affects
		fileAffects(&out[i], f, imageRef, affected) // a file finding affects the image
		for _, ref := range byPackage[findingKey(f.Ecosystem, f.Package, f.InstalledVersion)] {
			if affected[f.ID+"\x00"+ref] {
				continue // one finding per copy of the package
			}
			affected[f.ID+"\x00"+ref] = true
			*affects = append(*affects, cdx.Affects{
				Ref:   ref,
				Range: &[]cdx.AffectedVersions{{Version: f.InstalledVersion, Status: cdx.VulnerabilityStatusAffected}},
			})
		}
	}
	return out
}

func cdxSeverity(s string) cdx.Severity {
	switch strings.ToUpper(s) {
	case "CRITICAL":
		return cdx.SeverityCritical
	case "HIGH":
		return cdx.SeverityHigh
	case "MEDIUM":
		return cdx.SeverityMedium
	case "LOW":
		return cdx.SeverityLow
	}
	return cdx.SeverityUnknown
}

func cvssMethod(vector string) cdx.ScoringMethod {
	switch {
	case strings.HasPrefix(vector, "CVSS:4"):
		return cdx.ScoringMethodCVSSv4
	case strings.HasPrefix(vector, "CVSS:3.1"):
		return cdx.ScoringMethodCVSSv31
	case strings.HasPrefix(vector, "CVSS:3"):
		return cdx.ScoringMethodCVSSv3
	}
	return cdx.ScoringMethodOther
}

// WriteSPDX writes inv as an SPDX 2.3 JSON document: the image as the
// described package, containing one package per inventory entry, each with
// its purl as a PACKAGE-MANAGER external reference.
func WriteSPDX(w io.Writer, inv *Inventory) error {
	const imageID = common.ElementID("Image")
	image := &spdx.Package{
		PackageName:             inv.ImageDigest,
		PackageSPDXIdentifier:   imageID,
		PackageDownloadLocation: "NOASSERTION",
		PrimaryPackagePurpose:   "CONTAINER",
		PackageChecksums:        imageChecksums(inv.ImageDigest),
	}
	doc := &spdx.Document{
		SPDXVersion:       spdx.Version,
		DataLicense:       spdx.DataLicense,
		SPDXIdentifier:    "DOCUMENT",
		DocumentName:      inv.ImageDigest,
		DocumentNamespace: "https://github.com/portcullis/portcullis/spdx/" + strings.ReplaceAll(inv.ImageDigest, ":", "-") + "/" + uuid.NewString(),
		CreationInfo: &spdx.CreationInfo{
			Creators: []common.Creator{{CreatorType: "Tool", Creator: toolName + "-" + Version}},
			Created:  time.Now().UTC().Format(time.RFC3339),
		},
		Packages: []*spdx.Package{image},
		Relationships: []*spdx.Relationship{{
			RefA:         common.MakeDocElementID("", "DOCUMENT"),
			RefB:         common.MakeDocElementID("", string(imageID)),
			Relationship: common.TypeRelationshipDescribe,
		}},
	}
	contains := func(id common.ElementID) {
		doc.Relationships = append(doc.Relationships, &spdx.Relationship{
			RefA:         common.MakeDocElementID("", string(imageID)),
			RefB:         common.MakeDocElementID("", string(id)),
			Relationship: common.TypeRelationshipContains,
		})
	}
	if inv.OS.ID != "" {
		doc.Packages = append(doc.Packages, &spdx.Package{
			PackageName:             inv.OS.ID,
			PackageSPDXIdentifier:   "OperatingSystem",
			PackageVersion:          inv.OS.VersionID,
			PackageDescription:      inv.OS.PrettyName,
			PackageDownloadLocation: "NOASSERTION",
			PrimaryPackagePurpose:   "OPERATING-SYSTEM",
		})
		contains("OperatingSystem")
	}
	for i, p := range inv.Packages {
		id := common.ElementID("Package-" + strconv.Itoa(i+1))
		sp := &spdx.Package{
			PackageName:             p.Name,
			PackageSPDXIdentifier:   id,
			PackageVersion:          p.Version,
			PackageDownloadLocation: "NOASSERTION",
			PrimaryPackagePurpose:   "LIBRARY",
			PackageSourceInfo:       fmt.Sprintf("%s package found in %s (layer %d, %s)", p.Type, p.Location, p.LayerIndex, p.Layer),
		}
		if p.PURL != "" {
			sp.PackageExternalReferences = []*spdx.PackageExternalReference{{
				Category: common.CategoryPackageManager,
				RefType:  common.TypePackageManagerPURL,
				Locator:  p.PURL,
			}}
		}
		doc.Packages = append(doc.Packages, sp)
		contains(id)
	}
	if err := spdxjson.Write(doc, w, spdxjson.Indent("  ")); err != nil {
		return fmt.Errorf("encode SPDX: %w", err)
	}
	return nil
}

// imageChecksums records the manifest digest as the image's checksum.
func imageChecksums(digest string) []common.Checksum {
	alg, hex, ok := strings.Cut(digest, ":")
	if !ok || alg != "sha256" {
		return nil
	}
	return []common.Checksum{{Algorithm: common.SHA256, Value: hex}}
}
