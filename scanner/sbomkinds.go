package scanner

import (
	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

// CycloneDX properties of findings that are not vulnerabilities: the kind
// ("malware", "secret") on the vulnerability, and where a file finding
// is, one set per file, in the order found.
const (
	propFindingKind   = "portcullis:finding:kind"
	propFindingPath   = "portcullis:finding:path"
	propFindingLayer  = "portcullis:finding:layer"
	propFindingSHA256 = "portcullis:finding:sha256"
)

// cweEmbeddedMaliciousCode is CWE-506, which OpenSSF's malicious-packages
// records name too.
const cweEmbeddedMaliciousCode = 506

// describeKind marks a new CycloneDX vulnerability entry with its
// finding's kind: malware gets CWE-506 and a recommendation to remove the
// package; an id that is no OSV record's (a malware signature name, a
// secret kind) does not point at osv.dev.
func describeKind(v *cdx.Vulnerability, f vulndb.Finding) {
	if f.Kind == vulndb.KindVulnerability {
		return
	}
	v.Properties = &[]cdx.Property{{Name: propFindingKind, Value: f.Kind}}
	file := f.Path != "" && f.Package == ""
	if file {
		v.Source = &cdx.Source{Name: toolName}
	}
	switch f.Kind {
	case vulndb.KindMalware:
		v.CWEs = &[]int{cweEmbeddedMaliciousCode}
		if file {
			v.Recommendation = "Remove the file: it is known malware"
		} else {
			v.Recommendation = "Remove " + f.Package + ": it was published as malware; treat systems that installed it as compromised"
		}
	case vulndb.KindSecret:
		v.Recommendation = "Revoke the credential and remove it from the image (a later layer deleting it does not)"
	}
}

// fileAffects records where a file finding is, on the vulnerability entry,
// and makes it affect the image (a file belongs to no package component).
// A secret's fingerprint is not written: it identifies a secret to
// whoever knows it, and an SBOM is passed around.
func fileAffects(v *cdx.Vulnerability, f vulndb.Finding, imageRef string, affected map[string]bool) {
	if f.Path == "" || f.Package != "" {
		return
	}
	props := v.Properties
	if props == nil {
		props = &[]cdx.Property{}
		v.Properties = props
	}
	*props = append(*props, cdx.Property{Name: propFindingPath, Value: f.Path})
	if f.Layer != "" {
		*props = append(*props, cdx.Property{Name: propFindingLayer, Value: f.Layer})
	}
	if f.SHA256 != "" {
		*props = append(*props, cdx.Property{Name: propFindingSHA256, Value: f.SHA256})
	}
	if imageRef == "" || affected[f.ID+"\x00"+imageRef] {
		return
	}
	affected[f.ID+"\x00"+imageRef] = true
	*v.Affects = append(*v.Affects, cdx.Affects{Ref: imageRef})
}
