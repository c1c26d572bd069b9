package vex

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/package-url/packageurl-go"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

// Source is a document and where it came from, for the scan record.
type Source struct {
	Doc    *Document
	Origin string // "policy:<file>", "--vex <file>", "attestation"
}

// Suppressed is a finding a VEX statement removed from the verdict, with
// the statement that did.
type Suppressed struct {
	vulndb.Finding
	Document        string `json:"document"` // the document's @id
	Origin          string `json:"origin,omitempty"`
	Status          string `json:"status"`
	Justification   string `json:"justification,omitempty"`
	ImpactStatement string `json:"impactStatement,omitempty"`
}

// maxNotes bounds the notes one application writes into a record.
const maxNotes = 20

// Result is what Apply did.
type Result struct {
	Findings   []vulndb.Finding // what still counts
	Suppressed []Suppressed
	// Notes say which statements were read but did not count (a
	// not_affected statement with neither justification nor impact
	// statement), for the scan record.
	Notes []string
}

// Apply removes from findings of the image imageDigests name those
// a statement of sources says do not apply: status not_affected (with a
// justification or an impact statement) or fixed, for the finding's id or
// any of its aliases, and a product naming the image, narrowed when it
// lists subcomponents to the finding's package. Of several statements
// about one finding, the one with the latest timestamp wins (on equal
// timestamps the later one read), so affected or under_investigation
// issued after a not_affected brings the finding back.
//
// Only vulnerabilities are suppressed: malware and leaked secrets are not
// something a supplier can declare not to apply.
//
// imageDigests are the digests that name the image: its manifest's, then
// those of the indexes it was pulled through (a supplier's VEX often names
// the multi-platform index it published).
func Apply(sources []Source, imageDigests []string, findings []vulndb.Finding) Result {
	var r Result
	noted := map[string]bool{}
	note := func(s string) {
		if !noted[s] && len(r.Notes) < maxNotes {
			noted[s] = true
			r.Notes = append(r.Notes, s)
		}
	}
	byVuln := index(sources)
	for _, f := range findings {
		if f.Kind != vulndb.KindVulnerability {
			r.Findings = append(r.Findings, f)
			continue
		}
		var best *Statement
		var bestSrc Source
		for _, c := range candidates(byVuln, f) {
			src, s := sources[c.src], &sources[c.src].Doc.Statements[c.statement]
			if !appliesTo(s, imageDigests, f) {
				continue
			}
			if s.Status == StatusNotAffected && s.Justification == "" && s.ImpactStatement == "" {
				note(fmt.Sprintf("VEX %s (%s): not_affected statement for %s has no justification or impact statement; not honoured", docName(src), src.Origin, s.Vulnerability))
				continue
			}
			if best == nil || !s.Timestamp.Before(best.Timestamp) {
				best, bestSrc = s, src
			}
		}
		if best == nil || (best.Status != StatusNotAffected && best.Status != StatusFixed) {
			r.Findings = append(r.Findings, f)
			continue
		}
		r.Suppressed = append(r.Suppressed, Suppressed{Finding: f, Document: docName(bestSrc), Origin: bestSrc.Origin,
			Status: best.Status, Justification: best.Justification, ImpactStatement: best.ImpactStatement})
	}
	return r
}

func docName(src Source) string {
	if src.Doc.ID != "" {
		return src.Doc.ID
	}
	return "(no @id)"
}

// statementRef locates a statement among the sources.
type statementRef struct{ src, statement int }

// index maps each vulnerability name and alias (upper case) to the
// statements about it, so a finding costs a few lookups however many
// statements the documents hold.
func index(sources []Source) map[string][]statementRef {
	byVuln := map[string][]statementRef{}
	for i, src := range sources {
		if src.Doc == nil {
			continue
		}
		for j, s := range src.Doc.Statements {
			ref := statementRef{i, j}
			for _, v := range append([]string{s.Vulnerability}, s.Aliases...) {
				k := strings.ToUpper(v)
				if l := byVuln[k]; len(l) == 0 || l[len(l)-1] != ref {
					byVuln[k] = append(l, ref)
				}
			}
		}
	}
	return byVuln
}

// candidates are the statements naming the finding's id or one of its
// aliases, each once, in the order the sources hold them (so on equal
// timestamps the later one read wins).
func candidates(byVuln map[string][]statementRef, f vulndb.Finding) []statementRef {
	var out []statementRef
	seen := map[statementRef]bool{}
	for _, id := range slices.Concat([]string{f.ID}, f.Aliases, f.Upstream) {
		if id == "" {
			continue
		}
		for _, ref := range byVuln[strings.ToUpper(id)] {
			if !seen[ref] {
				seen[ref] = true
				out = append(out, ref)
			}
		}
	}
	slices.SortFunc(out, func(a, b statementRef) int {
		if a.src != b.src {
			return a.src - b.src
		}
		return a.statement - b.statement
	})
	return out
}

// appliesTo reports whether one of the statement's products names the
// image and, if that product lists subcomponents, f's package.
func appliesTo(s *Statement, imageDigests []string, f vulndb.Finding) bool {
	for _, p := range s.Products {
		if !slices.ContainsFunc(imageDigests, func(d string) bool { return namesImage(p, d) }) {
			continue
		}
		if len(p.Subcomponents) == 0 {
			return true
		}
		fp, ok := FindingPURL(f)
		if !ok {
			continue
		}
		for _, sub := range p.Subcomponents {
			if samePackage(sub, fp) {
				return true
			}
		}
	}
	return false
}

// namesImage: a bare digest, or an OCI purl whose version is the digest
// (purls encode its colon: pkg:oci/app@sha256%3A…).
func namesImage(p Product, imageDigest string) bool {
	if imageDigest == "" {
		return false
	}
	for _, id := range append([]string{p.ID}, p.Identifiers...) {
		if id == imageDigest {
			return true
		}
		if !strings.HasPrefix(id, "pkg:") {
			continue
		}
		u, err := packageurl.FromString(id)
		if err != nil || (u.Type != "oci" && u.Type != "docker") {
			continue
		}
		if v, err := url.PathUnescape(u.Version); err == nil && v == imageDigest {
			return true
		}
	}
	return false
}

// samePackage compares a subcomponent purl with the finding's package:
// type, namespace, name, and version when the subcomponent gives one.
// Qualifiers and subpath (arch, distro, repository_url) are ignored: the
// finding does not carry them, and their order never matters.
func samePackage(sub string, fp packageurl.PackageURL) bool {
	u, err := packageurl.FromString(sub)
	if err != nil {
		return false
	}
	if !strings.EqualFold(u.Type, fp.Type) || !strings.EqualFold(u.Namespace, fp.Namespace) || !strings.EqualFold(normalName(u.Type, u.Name), normalName(fp.Type, fp.Name)) {
		return false
	}
	return u.Version == "" || u.Version == fp.Version ||
		(u.Type == "composer" && strings.TrimPrefix(u.Version, "v") == strings.TrimPrefix(fp.Version, "v"))
}

// normalName folds PyPI's equivalent spellings (PEP 503).
func normalName(typ, name string) string {
	if strings.EqualFold(typ, "pypi") {
		return strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(name))
	}
	return name
}

// FindingPURL is the purl of the package a finding is about, built from
// its OSV ecosystem, name and installed version.
func FindingPURL(f vulndb.Finding) (packageurl.PackageURL, bool) {
	eco, _, _ := strings.Cut(f.Ecosystem, ":") // "Debian:12"
	name, ns := f.Package, ""
	typ := vulndb.PURLType(eco)
	switch eco {
	case "npm":
		if strings.HasPrefix(name, "@") {
			ns, name, _ = strings.Cut(name, "/")
		}
	case "Go", "Packagist":
		if i := strings.LastIndex(name, "/"); i >= 0 {
			ns, name = name[:i], name[i+1:]
		}
	case "Maven":
		ns, name, _ = strings.Cut(name, ":")
	case "Debian", "Ubuntu":
		typ, ns = "deb", strings.ToLower(eco)
	case "Alpine", "Wolfi", "Chainguard":
		typ, ns = "apk", strings.ToLower(eco)
	case "Red Hat", "Rocky Linux", "AlmaLinux", "openSUSE", "SUSE":
		typ, ns = "rpm", strings.ToLower(strings.ReplaceAll(eco, " ", ""))
	}
	if typ == "" {
		return packageurl.PackageURL{}, false
	}
	if name == "" {
		return packageurl.PackageURL{}, false
	}
	return packageurl.PackageURL{Type: typ, Namespace: ns, Name: name, Version: f.InstalledVersion}, true
}
