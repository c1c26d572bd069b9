// Package vulndb imports OSV vulnerability records into an on-disk index and
// matches packages against it with each ecosystem's own version order.
//
// # Storage
//
// One bbolt file, <dir>/vulndb.bolt. The "index" bucket maps
// "ecosystem\x00package\x00id" to a compact entry (id, aliases, upstream,
// one-line summary, the sorted ECOSYSTEM/SEMVER ranges and the listed
// versions not already inside them, and the severity, computed at import):
// a Match reads only the keys under the queried packages. The "records"
// bucket says which keys each record owns and where it came from, so a
// re-import replaces a record cleanly and an Update can drop what its source
// no longer lists. Readers see the old or the new database, never a mix:
// an Import or Update whose changes fit in a bounded batch is one bbolt
// transaction; a larger one (a first import of osv.dev's few hundred
// thousand records) is streamed in batches into a copy beside the file in
// force, which replaces it by a rename once complete (see importer).
//
// ClamAV hash signatures (.hsb, .hdb) live in the same file, one bucket
// per imported signature file under "sigfiles", keyed by file size first
// (see sigstore.go); SignatureMatcher looks files up by size, then hash.
//
// # Ecosystems
//
// Records and queries are indexed under the same normalized ecosystem. OS
// ecosystems keep their release and match it exactly ("Debian:12",
// "Alpine:v3.16", "Ubuntu:22.04", "AlmaLinux:9", "Rocky Linux:9"); a few
// spellings are folded ("Alpine:3.16.9" → "Alpine:v3.16", "Debian:12.5" →
// "Debian:12", osv.dev's "Ubuntu:22.04:LTS" → "Ubuntu:22.04"). Language
// ecosystems ("PyPI", "npm", "Go", "Maven", "crates.io", "RubyGems", "NuGet",
// "Packagist") match by name: PyPI names per PEP 503, NuGet and Packagist
// case-insensitively, the others exactly (Maven "group:artifact").
//
// Version order comes from github.com/google/osv-scalibr/semantic, which is
// given the ecosystem with its release (it drops the release itself):
//
//	Debian:*, Ubuntu:*          dpkg (epochs, ~, revisions)
//	Alpine:*                    apk (-rN, _p, _rc, _alpha, letters)
//	AlmaLinux:*, Rocky Linux:*, Red Hat:*   rpm
//	Go, npm, crates.io          semver (Go: "v" prefix, pseudo-versions)
//	PyPI                        PEP 440
//	Maven, RubyGems, NuGet, Packagist       their own rules
//
// SEMVER ranges are compared as semver whatever the ecosystem. GIT ranges
// are ignored (osv.dev lists their versions). Ranges of an ecosystem the
// semantic package does not know only match when they cover every version.
//
// # Severity
//
// Per affected package, first found wins:
//  1. CVSS v3.0/v3.1/v4.0 vectors in affected[].severity, then in the
//     record's severity: the highest computed base score, mapped with the
//     CVSS scale (CRITICAL ≥ 9.0, HIGH ≥ 7.0, MEDIUM ≥ 4.0, else LOW, 0.0
//     "None" included, since it was rated; CVSS v2 is not scored);
//  2. a severity word in affected[].ecosystem_specific or
//     affected[].database_specific, then the record's database_specific
//     (GHSA: CRITICAL, HIGH, MODERATE → MEDIUM, LOW);
//  3. an "Ubuntu" severity entry (Ubuntu priority; negligible → LOW);
//  4. UNKNOWN.
package vulndb
