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

// Kinds of finding. A vulnerability has no kind ("", so records stored
// before kinds existed read as what they are).
const (
	KindVulnerability = ""
	KindMalware       = "malware" // a malicious package (OSV MAL-…) or a known-bad file
	KindSecret        = "secret"  // a credential left in a layer or in the image config
)

// Finding is one vulnerability affecting one queried package, or (Kind) a
// malicious package, a known-bad file or a leaked secret.
type Finding struct {
	Kind      string   `json:"kind,omitempty"` // one of the Kind* constants
	ID        string   `json:"id"`             // OSV id: CVE-…, GHSA-…, ALPINE-CVE-…, DEBIAN-CVE-…, GO-…, MAL-…; a signature name; secret/<kind>
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

	// Findings in a file rather than a package (known-bad files, secrets)
	// say where: the path in the image ("config:Env" or
	// "config:history[N]" for the image config), the layer that holds it
	// (compressed digest), the file's sha256, the line (secrets, 1-based),
	// and a fingerprint that identifies a secret without showing it.
	Path        string `json:"path,omitempty"`
	Layer       string `json:"layer,omitempty"`
	SHA256      string `json:"sha256,omitempty"`
	Line        int    `json:"line,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
	// Prefix is, for a leaked token, at most its first four characters
	// ("ghp_", "AKIA"): enough to tell which it is, never the secret.
	Prefix string `json:"prefix,omitempty"`
}
