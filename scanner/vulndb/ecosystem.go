package vulndb

import (
	"net/url"
	"strings"
)

// canonicalEcosystem gives OSV's spelling of an ecosystem name, so that
// "pypi" or "GO" from a hand-written query still finds the records. base is
// the part before the release.
func canonicalEcosystem(base string) string {
	switch strings.ToLower(base) {
	case "alpine":
		return "Alpine"
	case "almalinux":
		return "AlmaLinux"
	case "crates.io":
		return "crates.io"
	case "debian":
		return "Debian"
	case "go":
		return "Go"
	case "maven":
		return "Maven"
	case "npm":
		return "npm"
	case "nuget":
		return "NuGet"
	case "packagist":
		return "Packagist"
	case "pypi":
		return "PyPI"
	case "red hat":
		return "Red Hat"
	case "rocky linux":
		return "Rocky Linux"
	case "rubygems":
		return "RubyGems"
	case "ubuntu":
		return "Ubuntu"
	}
	return base
}

// normalizeEcosystem gives the key under which records of an ecosystem are
// indexed, applied alike to records and to queries. OS ecosystems keep their
// release and are matched exactly on it; a few spellings that mean the same
// release are folded together:
//   - "Alpine:3.16", "Alpine:v3.16.9" → "Alpine:v3.16" (osv.dev names the
//     release branch, an image's /etc/alpine-release has the point release);
//   - "Debian:12.5" → "Debian:12" (records name the major release);
//   - "Ubuntu:22.04:LTS" → "Ubuntu:22.04" (osv.dev marks LTS releases, an
//     image's os-release does not). "Ubuntu:Pro:…" stays apart: Pro fixes
//     are not available to an image without a subscription.
func normalizeEcosystem(eco string) string {
	eco = strings.TrimSpace(eco)
	base, release, hasRelease := strings.Cut(eco, ":")
	base = canonicalEcosystem(base)
	if !hasRelease {
		return base
	}
	switch base {
	case "Alpine":
		r := strings.TrimPrefix(release, "v")
		if parts := strings.Split(r, "."); len(parts) > 2 {
			r = parts[0] + "." + parts[1]
		}
		release = "v" + r
	case "Debian":
		release, _, _ = strings.Cut(release, ".")
	case "Ubuntu":
		release = strings.TrimSuffix(release, ":LTS")
	}
	return base + ":" + release
}

// baseEcosystem is the ecosystem without its release: "Debian:12" → "Debian".
func baseEcosystem(eco string) string {
	base, _, _ := strings.Cut(eco, ":")
	return base
}

// normalizeName gives the key under which a package name is indexed. PyPI
// names compare per PEP 503 (https://peps.python.org/pep-0503/#normalized-names):
// "PyYAML", "pyyaml" and "py_yaml" are one project. NuGet ids and Packagist
// names are case-insensitive in their registries. Everything else is exact:
// Go module paths and Maven "group:artifact" are case-sensitive.
func normalizeName(eco, name string) string {
	name = strings.TrimSpace(name)
	switch baseEcosystem(eco) {
	case "PyPI":
		return pep503Name(name)
	case "NuGet", "Packagist":
		return strings.ToLower(name)
	}
	return name
}

// pep503Name lower-cases name and turns each run of "-", "_" and "." into
// a single "-".
func pep503Name(name string) string {
	var b strings.Builder
	b.Grow(len(name))
	sep := false
	for _, r := range strings.ToLower(name) {
		if r == '-' || r == '_' || r == '.' {
			sep = true
			continue
		}
		if sep {
			b.WriteByte('-')
			sep = false
		}
		b.WriteRune(r)
	}
	if sep {
		b.WriteByte('-')
	}
	return b.String()
}

// isGoToolchain tells the Go vulndb packages whose versions are Go releases.
func isGoToolchain(eco, name string) bool {
	return baseEcosystem(eco) == "Go" && (name == "stdlib" || name == "toolchain")
}

// goToolchainVersion turns a Go release as `go version` or build info print
// it into the semver the Go vulndb uses: "go1.21.3" → "1.21.3", "go1.21" →
// "1.21.0", "go1.22rc2" → "1.22.0-rc.2", "go1.20.1 X:boringcrypto" → "1.20.1".
// Anything else is returned trimmed of a leading "go"/"v".
func goToolchainVersion(v string) string {
	v = strings.TrimSpace(v)
	v, _, _ = strings.Cut(v, " ")
	v = strings.TrimPrefix(v, "go")
	v = strings.TrimPrefix(v, "v")
	pre := ""
	for _, tag := range []string{"rc", "beta", "alpha"} {
		if i := strings.Index(v, tag); i > 0 && !strings.Contains(v, "-") {
			pre = "-" + tag + "." + v[i+len(tag):]
			v = v[:i]
			break
		}
	}
	switch strings.Count(v, ".") {
	case 0:
		v += ".0.0"
	case 1:
		v += ".0"
	}
	return v + pre
}

// languagePURLTypes pairs the purl types
// (https://github.com/package-url/purl-spec) of language packages with
// their OSV ecosystems: read one way for queries that carry only a purl,
// the other for a finding's purl (PURLType).
var languagePURLTypes = [...]struct{ purlType, ecosystem string }{
	{"cargo", "crates.io"}, {"composer", "Packagist"}, {"gem", "RubyGems"}, {"golang", "Go"},
	{"maven", "Maven"}, {"npm", "npm"}, {"nuget", "NuGet"}, {"pypi", "PyPI"},
}

// purlEcosystem is the OSV ecosystem of a language package's purl type
// ("": not a language type).
func purlEcosystem(typ string) string {
	for _, t := range languagePURLTypes {
		if strings.EqualFold(t.purlType, typ) {
			return t.ecosystem
		}
	}
	return ""
}

// PURLType is the purl type of a language ecosystem's packages ("": not
// a language ecosystem).
func PURLType(ecosystem string) string {
	for _, t := range languagePURLTypes {
		if t.ecosystem == ecosystem {
			return t.purlType
		}
	}
	return ""
}

// fromPURL fills in a query's ecosystem, name and version from its purl when
// they are missing. OS purls are left alone: their ecosystem needs the
// release, which only the inventory knows.
func fromPURL(q Query) Query {
	if q.PURL == "" || (q.Ecosystem != "" && q.Name != "" && q.Version != "") {
		return q
	}
	rest, ok := strings.CutPrefix(q.PURL, "pkg:")
	if !ok {
		return q
	}
	rest, _, _ = strings.Cut(rest, "#")
	rest, _, _ = strings.Cut(rest, "?")
	typ, path, ok := strings.Cut(rest, "/")
	if !ok {
		return q
	}
	eco := purlEcosystem(typ)
	if eco == "" {
		return q
	}
	path, version, _ := strings.Cut(path, "@")
	var segs []string
	for _, s := range strings.Split(path, "/") {
		if u, err := url.PathUnescape(s); err == nil {
			segs = append(segs, u)
		}
	}
	if len(segs) == 0 {
		return q
	}
	name := strings.Join(segs, "/")
	if eco == "Maven" && len(segs) == 2 {
		name = segs[0] + ":" + segs[1]
	}
	if v, err := url.PathUnescape(version); err == nil {
		version = v
	}
	if q.Ecosystem == "" {
		q.Ecosystem = eco
	}
	if q.Name == "" {
		q.Name = name
	}
	if q.Version == "" {
		q.Version = version
	}
	return q
}
