package vulndb

import "time"

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
	ID        string   `json:"id"` // OSV id: CVE-…, GHSA-…, ALPINE-CVE-…, DEBIAN-CVE-…, GO-…
	Aliases   []string `json:"aliases,omitempty"`
	Upstream  []string `json:"upstream,omitempty"` // OSV "upstream": the CVE behind an ALPINE-/DEBIAN- id
	Summary   string   `json:"summary,omitempty"`
	Ecosystem string   `json:"ecosystem"`
	Package   string   `json:"package"` // the queried package's Name
	// AffectedPackage is the package the record names when it is not
	// Package: the source package ("busybox" for ssl_client).
	AffectedPackage  string   `json:"affectedPackage,omitempty"`
	InstalledVersion string   `json:"installedVersion"`
	FixedVersions    []string `json:"fixedVersions,omitempty"` // from the affected ranges that contain the installed version
	Severity         string   `json:"severity"`                // CRITICAL, HIGH, MEDIUM, LOW, or UNKNOWN
	Score            float64  `json:"score,omitempty"`         // CVSS base score when a vector was present
	CVSSVector       string   `json:"cvssVector,omitempty"`
	// Published is when the vulnerability was disclosed; zero if unknown.
	Published time.Time `json:"published,omitzero"`
	Query     int       `json:"-"` // index of the Query it matched
}
