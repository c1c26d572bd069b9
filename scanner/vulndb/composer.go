package vulndb

import (
	"strings"

	"github.com/google/osv-scalibr/semantic"
)

// composerVersion orders Packagist versions as Composer does. osv-scalibr's
// PackagistVersion follows PHP's version_compare, which differs from
// Composer in one way that matters for matching: version_compare holds
// "1.2" below "1.2.0" and "2.0.0-beta1" above "2.0", while Composer
// normalises every version to four numeric parts first (VersionParser:
// "1.2" → "1.2.0.0", "v2.0.0-beta1" → "2.0.0.0-beta1"). Records name
// "2.0.0" where a lockfile says "v2.0" or "2.0.0.0", so each string is
// normalised the same way before version_compare's rules (dev < alpha <
// beta < RC < stable < patch) order it.
type composerVersion struct {
	semantic.PackagistVersion
}

var _ semantic.Version = composerVersion{}

func parseComposerVersion(s string) composerVersion {
	return composerVersion{semantic.ParsePackagistVersion(normalizeComposerVersion(s))}
}

// Compare orders v against another composerVersion.
func (v composerVersion) Compare(w semantic.Version) (int, error) {
	if cw, ok := w.(composerVersion); ok {
		return v.PackagistVersion.Compare(cw.PackagistVersion)
	}
	return 0, semantic.ErrNotSameEcosystem
}

// CompareStr orders v against the version string s, normalised alike.
func (v composerVersion) CompareStr(s string) (int, error) {
	return v.Compare(parseComposerVersion(s))
}

// composerReleaseParts is how many numeric parts Composer gives a release.
const composerReleaseParts = 4

// normalizeComposerVersion drops a leading "v" and pads the numeric
// release to four parts, leaving any stability suffix as written:
// "v1.2-RC1" → "1.2.0.0-RC1". A release of more than four parts, or a
// branch ("dev-main", "1.x-dev"), is returned without the "v" only.
func normalizeComposerVersion(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "v"), "V")
	end := 0
	for end < len(s) && (s[end] == '.' || (s[end] >= '0' && s[end] <= '9')) {
		end++
	}
	release, rest := strings.TrimSuffix(s[:end], "."), s[end:]
	if release == "" || strings.Contains(release, "..") || (rest != "" && s[end-1] == '.') {
		// Not a release: "1.x-dev" is a branch, padding would misplace it.
		return s
	}
	parts := strings.Count(release, ".") + 1
	if parts >= composerReleaseParts {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 2*(composerReleaseParts-parts))
	b.WriteString(release)
	for range composerReleaseParts - parts {
		b.WriteString(".0")
	}
	b.WriteString(rest)
	return b.String()
}

// sameListedVersion tells whether a version a record lists explicitly
// names the installed version iv (already through queryVersion). Listed
// versions are compared as text, with the spellings an ecosystem treats
// as one version folded together: Composer's leading "v" and NuGet's
// case-insensitive pre-release and ignored build metadata.
func sameListedVersion(eco, listed, iv string) bool {
	if listed == iv {
		return true
	}
	switch baseEcosystem(eco) {
	case "Packagist":
		return strings.TrimPrefix(strings.TrimPrefix(listed, "v"), "V") == strings.TrimPrefix(strings.TrimPrefix(iv, "v"), "V")
	case "NuGet":
		l, _, _ := strings.Cut(listed, "+")
		v, _, _ := strings.Cut(iv, "+")
		return strings.EqualFold(l, v)
	}
	return false
}

// foldsListedVersions tells the ecosystems where sameListedVersion is more
// than a comparison of the text.
func foldsListedVersions(eco string) bool {
	switch baseEcosystem(eco) {
	case "Packagist", "NuGet":
		return true
	}
	return false
}
