// Package scanner finds what an image contains: it walks the layers in
// order, applies whiteouts, and extracts the OS and language packages, each
// with the layer that introduced it.
package scanner

import "github.com/portcullis/portcullis/scanner/vulndb"

// OS is the operating system of an image, from /etc/os-release (and
// /etc/alpine-release, /etc/debian_version).
type OS struct {
	ID         string `json:"id"`                   // os-release ID: debian, alpine, ubuntu, rhel, …
	VersionID  string `json:"versionId,omitempty"`  // os-release VERSION_ID: 12, 3.16.9, 22.04
	PrettyName string `json:"prettyName,omitempty"` // os-release PRETTY_NAME
	// Ecosystem is the OSV ecosystem of the OS packages, precise to the
	// release: "Debian:12", "Alpine:v3.16", "Ubuntu:22.04". Empty if unknown.
	Ecosystem string `json:"ecosystem,omitempty"`
}

// Package is one installed package.
type Package struct {
	Name    string `json:"name"`    // as installed: the binary package for dpkg/apk/rpm, the module for Go, …
	Version string `json:"version"` // as installed, in the ecosystem's own syntax
	// Ecosystem is the OSV ecosystem: "Debian:12", "Alpine:v3.16", "PyPI",
	// "npm", "Go", "Maven", "crates.io", "RubyGems", "Red Hat", …
	Ecosystem string `json:"ecosystem"`
	// SourceName and SourceVersion name the source package for OS packages
	// (dpkg Source:, apk origin, rpm source RPM); OSV records for Debian and
	// Alpine name source packages. Empty when the same as Name/Version.
	SourceName    string `json:"sourceName,omitempty"`
	SourceVersion string `json:"sourceVersion,omitempty"`
	PURL          string `json:"purl"`
	Type          string `json:"type"`     // which extractor found it: "dpkg", "apk", "rpm", "go-binary", "python", "npm", "java", "rust-binary", "gem", "composer", "dotnet", "cargo"
	Location      string `json:"location"` // absolute path in the image of the file it was found in
	Layer         string `json:"layer"`    // digest (compressed, as in the manifest) of the layer that introduced it
	LayerIndex    int    `json:"layerIndex"`
}

// Layer is one layer of the scanned image.
type Layer struct {
	Digest    string `json:"digest"` // compressed digest, as in the manifest
	DiffID    string `json:"diffId"` // uncompressed digest, from the config
	Size      int64  `json:"size"`   // compressed size
	MediaType string `json:"mediaType"`
}

// Inventory is everything found in one image.
type Inventory struct {
	ImageDigest string    `json:"imageDigest"` // manifest digest
	OS          OS        `json:"os"`
	Layers      []Layer   `json:"layers"`
	Packages    []Package `json:"packages"`
	// ScannerVersion changes whenever extraction could give a different
	// answer for the same image, so stored inventories can be redone.
	ScannerVersion string `json:"scannerVersion"`
	// Note explains an empty inventory that is not an error, e.g. a
	// signature or SBOM manifest that has no filesystem to scan.
	Note string `json:"note,omitempty"`
	// FileFindings are findings in files and in the image config rather
	// than in packages (secrets: Kind "secret"), found while walking the
	// layers; the pipeline adds them to the matched findings, so a
	// re-match keeps them. At most 1,000 per image.
	FileFindings []vulndb.Finding `json:"fileFindings,omitempty"`
	// Notes say where the scan left findings out (more than 100 secrets
	// in one file, more than 1,000 findings in files in the image).
	Notes []string `json:"notes,omitempty"`
}
