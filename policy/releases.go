package policy

import (
	"strconv"
	"strings"
)

// NewerReleases looks for tags that sort higher than current by
// semantic-version order and returns the best suggestions: the newest patch
// of current's major.minor, and the newest release overall. Either is ""
// when there is none; both are "" when current is not a version ("latest",
// "main", a digest).
//
// Tags are read "semver-ish", the way image repositories use them:
//
//   - an optional "v": v1.2.3 and 1.2.3 are the same version;
//   - one to four numeric components, compared numerically (1.2.10 > 1.2.9);
//     only tags with as many components as current are compared, because
//     "3.20" and "3" are usually moving aliases of "3.20.1", not releases;
//   - a suffix after '-' is a pre-release when it is a pre-release word with
//     optional numbers (rc1, rc.2, beta, alpha.3, dev, preview, …), and is
//     otherwise a variant (alpine, slim, bookworm) that must equal current's:
//     the newer release of 1.25.3-alpine is 1.26.0-alpine, not 1.26.0;
//   - pre-releases count only when current is one.
//
// Everything else ("latest", "sha256-….sig", "main") is ignored. Among tags
// of equal version, one spelt like current (with or without "v") is
// preferred, then the lexically smallest, so the answer does not depend on
// the order of tags.
func NewerReleases(tags []string, current string) (newestPatch, newestOverall string) {
	cur, ok := parseTagVersion(current)
	if !ok {
		return "", ""
	}
	var patch, overall *tagVersion
	for _, t := range tags {
		c, ok := parseTagVersion(t)
		if !ok || len(c.nums) != len(cur.nums) || c.variant != cur.variant {
			continue
		}
		if c.pre != nil && cur.pre == nil {
			continue
		}
		if compareVersions(c, cur) <= 0 {
			continue
		}
		if overall == nil || better(c, *overall, cur) {
			overall = &c
		}
		if len(c.nums) >= 3 && c.nums[0] == cur.nums[0] && c.nums[1] == cur.nums[1] &&
			(patch == nil || better(c, *patch, cur)) {
			patch = &c
		}
	}
	if patch != nil {
		newestPatch = patch.tag
	}
	if overall != nil {
		newestOverall = overall.tag
	}
	return newestPatch, newestOverall
}

// better reports whether a is a better suggestion than b for cur.
func better(a, b, cur tagVersion) bool {
	if c := compareVersions(a, b); c != 0 {
		return c > 0
	}
	if (a.v == cur.v) != (b.v == cur.v) {
		return a.v == cur.v
	}
	return a.tag < b.tag
}

type tagVersion struct {
	tag     string
	v       bool     // spelt with a leading "v"
	nums    []uint64 // 1 to 4 components
	pre     []string // pre-release identifiers; nil for a release
	variant string   // non-pre-release suffix ("alpine")
}

const maxVersionComponents = 4

func parseTagVersion(tag string) (tagVersion, bool) {
	tv := tagVersion{tag: tag}
	s := tag
	if strings.HasPrefix(s, "v") {
		tv.v = true
		s = s[1:]
	}
	i := 0
	for {
		j := i
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		if j == i {
			return tagVersion{}, false
		}
		n, err := strconv.ParseUint(s[i:j], 10, 64)
		if err != nil {
			return tagVersion{}, false
		}
		tv.nums = append(tv.nums, n)
		i = j
		if i < len(s) && s[i] == '.' && len(tv.nums) < maxVersionComponents {
			i++
			continue
		}
		break
	}
	rest := s[i:]
	if rest == "" {
		return tv, true
	}
	if rest[0] != '-' || len(rest) == 1 {
		return tagVersion{}, false
	}
	suffix := rest[1:]
	if isPreRelease(suffix) {
		tv.pre = preIdentifiers(suffix)
	} else {
		tv.variant = suffix
	}
	return tv, true
}

// isPreRelease: a known pre-release word followed only by numbers and
// separators ("rc1", "rc.1", "beta-2", "alpha"). A closed list, because an
// open one would turn every variant ("alpine") into a pre-release.
func isPreRelease(s string) bool {
	l := strings.ToLower(s)
	i := 0
	for i < len(l) && l[i] >= 'a' && l[i] <= 'z' {
		i++
	}
	switch l[:i] {
	case "alpha", "beta", "rc", "pre", "preview", "dev", "snapshot", "nightly", "canary":
	default:
		return false
	}
	return strings.Trim(l[i:], "0123456789.-_") == ""
}

// preIdentifiers splits a pre-release at separators and letter/digit
// boundaries, so rc2 < rc10 and rc.1 = rc1.
func preIdentifiers(s string) []string {
	ids := []string{}
	start := 0
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	for i := 1; i <= len(s); i++ {
		if i < len(s) && !strings.ContainsRune(".-_", rune(s[i])) && isDigit(s[i]) == isDigit(s[i-1]) {
			continue
		}
		if id := strings.Trim(s[start:i], ".-_"); id != "" {
			ids = append(ids, strings.ToLower(id))
		}
		start = i
	}
	return ids
}

// compareVersions orders by numeric components, then a release above its
// pre-releases, then pre-release identifiers as semver does: numbers
// numerically and below words, words lexically, a longer list above its
// prefix.
func compareVersions(a, b tagVersion) int {
	for i := 0; i < len(a.nums) && i < len(b.nums); i++ {
		if a.nums[i] != b.nums[i] {
			if a.nums[i] > b.nums[i] {
				return 1
			}
			return -1
		}
	}
	if len(a.nums) != len(b.nums) {
		return len(a.nums) - len(b.nums)
	}
	switch {
	case a.pre == nil && b.pre == nil:
		return 0
	case a.pre == nil:
		return 1
	case b.pre == nil:
		return -1
	}
	for i := 0; i < len(a.pre) && i < len(b.pre); i++ {
		if c := compareIdentifier(a.pre[i], b.pre[i]); c != 0 {
			return c
		}
	}
	return len(a.pre) - len(b.pre)
}

func compareIdentifier(a, b string) int {
	an, bn := isNumeric(a), isNumeric(b)
	switch {
	case an && bn:
		// Compare arbitrarily long numbers without parsing them.
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if len(a) != len(b) {
			return len(a) - len(b)
		}
	case an:
		return -1
	case bn:
		return 1
	}
	return strings.Compare(a, b)
}

func isNumeric(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
