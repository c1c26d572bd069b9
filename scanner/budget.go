package scanner

import (
	"errors"
	"fmt"
)

// The scanner reads whatever anyone pushed to a public registry, so every
// scan is bounded in memory and work. The defaults are far above what real
// images reach and are documented in README.md (Scanning); each can be
// changed with its option. Past a bound the scan fails with an error that
// wraps ErrLimitExceeded and names the bound, the layer and the path.
const (
	// defaultMaxImageEntries bounds the tar entries of all layers together
	// (a full distribution image has about 100,000 files).
	defaultMaxImageEntries = 10_000_000
	// defaultMaxReadBytes bounds the bytes read into memory for extractors
	// over the whole image, counting sparse files at their full size. Large
	// CUDA and conda images read a few GiB of executables.
	defaultMaxReadBytes = 16 << 30
	// defaultMaxPackages bounds the packages of one image: a full Debian or
	// Ubuntu image has fewer than 3,000 dpkg packages, big node images 5,000
	// to 10,000 npm packages.
	defaultMaxPackages = 50_000
	// defaultMaxInventoryBytes bounds the strings (names, versions,
	// locations, purls) of those packages, about what the stored record
	// costs; 50,000 real packages take about 10 MB.
	defaultMaxInventoryBytes = 32 << 20
	// defaultMaxPackageDBSize bounds an OS package database (dpkg status,
	// apk installed, rpm Packages/rpmdb.sqlite); a full Ubuntu's dpkg
	// status is about 4 MB, a large RHEL 7 rpm Packages about 100 MB.
	defaultMaxPackageDBSize = 128 << 20
	// defaultMaxMetadataSize bounds a language package's metadata file
	// (package.json, METADATA, PKG-INFO, gemspec); larger ones are skipped.
	// Old npm versions copied the README into package.json: a few hundred KB.
	defaultMaxMetadataSize = 8 << 20
	// defaultMaxArchiveDepth bounds how deep Java archives nest: an ear
	// holding a war holding jars is 3.
	defaultMaxArchiveDepth = 8
	// defaultMaxArchiveEntries bounds the entries of one Java archive and
	// all archives inside it; the largest shaded jars have about 150,000.
	defaultMaxArchiveEntries = 500_000
	// defaultMaxArchiveBytes bounds the bytes one Java archive opens: its
	// own size, the uncompressed size of every archive inside it (Spring
	// Boot jars store theirs uncompressed, so about the outer size again)
	// and of the manifests and pom files read.
	defaultMaxArchiveBytes = 384 << 20
	// maxArchiveMetadataSize bounds one MANIFEST.MF, pom.properties or
	// pom.xml inside an archive; the largest OSGi manifests are about 1 MB.
	maxArchiveMetadataSize = 4 << 20
)

// ErrLimitExceeded is wrapped by the error of a scan stopped at one of its
// bounds.
var ErrLimitExceeded = errors.New("scan limit exceeded")

// limitError names the bound that stopped a scan and where; the layer is
// added by Scan.
func limitError(where, what string, limit int64, option string) error {
	return fmt.Errorf("%s: %w: %s exceeds %d (%s)", where, ErrLimitExceeded, what, limit, option)
}

// entryName quotes a tar entry's name for an error, cut short: names come
// from the image and may be up to a MiB long.
func entryName(name string) string {
	const maxLen = 200
	if len(name) > maxLen {
		name = name[:maxLen] + "…"
	}
	return fmt.Sprintf("tar entry %q", name)
}

// scanBudget is what the rest of one image's scan may still use, shared by
// the walkers of its layers.
type scanBudget struct {
	entries   int    // tar entries
	readBytes int64  // bytes read into memory for extractors
	buf       []byte // reused for every file read into memory
	// inspectBuf is reused for every file read for the inspectors; it is
	// apart from buf because the extractors read from it into buf.
	inspectBuf []byte
}
