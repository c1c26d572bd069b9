// Package vulndb imports OSV vulnerability records into an on-disk index and
// matches packages against it with each ecosystem's own version order.
package vulndb

// Query is one package to match.
type Query struct {
	Ecosystem     string // OSV ecosystem, with release for OS packages: "Debian:12", "Alpine:v3.16", "PyPI", "Go"
	Name          string
	Version       string
	SourceName    string // OS packages: OSV Debian/Alpine records name source packages
	SourceVersion string
	PURL          string
}

// Finding is one vulnerability affecting one queried package.
type Finding struct {
	ID               string   `json:"id"` // OSV id: CVE-…, GHSA-…, ALPINE-CVE-…, DEBIAN-CVE-…, GO-…
	Aliases          []string `json:"aliases,omitempty"`
	Summary          string   `json:"summary,omitempty"`
	Ecosystem        string   `json:"ecosystem"`
	Package          string   `json:"package"` // the queried package's Name
	InstalledVersion string   `json:"installedVersion"`
	FixedVersions    []string `json:"fixedVersions,omitempty"` // from the affected ranges that contain the installed version
	Severity         string   `json:"severity"`                // CRITICAL, HIGH, MEDIUM, LOW, or UNKNOWN
	Score            float64  `json:"score,omitempty"`         // CVSS base score when a vector was present
	CVSSVector       string   `json:"cvssVector,omitempty"`
	Query            int      `json:"-"` // index of the Query it matched
}
