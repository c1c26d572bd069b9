package scanner

import (
	"bufio"
	"bytes"
	"cmp"
	"path"
	"strconv"
	"strings"

	"github.com/google/osv-scalibr/purl"
)

// maxOSFileSize bounds the OS identification files kept in memory.
const maxOSFileSize = 64 << 10

// osFiles are read whole and kept (they are tiny) because the OS is decided
// from the final filesystem, after the last layer.
var osFiles = map[string]bool{
	"etc/os-release":     true,
	"usr/lib/os-release": true,
	"etc/alpine-release": true,
	"etc/debian_version": true,
}

// maxOSFileCandidates bounds the files per layer kept as possible symlink
// targets of the OS identification files (see isOSFileCandidate).
const maxOSFileCandidates = 16

// isOSFileCandidate reports whether a file outside osFiles may still be
// what one of them resolves to through a symlink (Fedora links
// /usr/lib/os-release to os.release.d/os-release-container): it has one of
// the known names, or starts with "os-release". Such a file is kept only
// until the end of its layer, and then only if a symlink from an osFiles
// path reaches it; a link to a file from a lower layer that no link reached
// before is not followed.
func isOSFileCandidate(p string) bool {
	base := path.Base(p)
	return osFileNames[base] || strings.HasPrefix(base, "os-release")
}

var osFileNames = map[string]bool{"os-release": true, "alpine-release": true, "debian_version": true}

// wantSymlink reports whether a symlink at p can matter for reading the OS
// files: Debian's /etc/os-release -> ../usr/lib/os-release, or a linked
// directory above one of them.
func wantSymlink(p string) bool {
	if osFiles[p] {
		return true
	}
	for f := range osFiles {
		if strings.HasPrefix(f, p+"/") {
			return true
		}
	}
	return false
}

// debianCodenames maps release names to numbers for testing/unstable images,
// whose os-release has VERSION_CODENAME but no VERSION_ID.
var debianCodenames = map[string]string{
	"jessie": "8", "stretch": "9", "buster": "10", "bullseye": "11",
	"bookworm": "12", "trixie": "13", "forky": "14", "duke": "15",
}

// detectOS reads os-release (and the distribution's own release file as a
// fallback) from the final filesystem.
func detectOS(st *fsState) OS {
	kv := map[string]string{}
	if data, ok := st.readFile("etc/os-release"); ok {
		kv = parseOSRelease(data)
	} else if data, ok := st.readFile("usr/lib/os-release"); ok {
		kv = parseOSRelease(data)
	}
	o := OS{ID: kv["ID"], VersionID: kv["VERSION_ID"], PrettyName: kv["PRETTY_NAME"]}
	alpine, hasAlpine := st.readFile("etc/alpine-release")
	debian, hasDebian := st.readFile("etc/debian_version")
	switch {
	case o.ID == "" && hasAlpine:
		o.ID = "alpine"
	case o.ID == "" && hasDebian:
		o.ID = "debian"
	}
	if o.VersionID == "" {
		switch o.ID {
		case "alpine":
			o.VersionID = firstLine(alpine)
		case "debian":
			v := firstLine(debian) // "12.4", or "trixie/sid" on testing
			if n, ok := debianCodenames[kv["VERSION_CODENAME"]]; ok {
				o.VersionID = n
			} else if v != "" && v[0] >= '0' && v[0] <= '9' {
				o.VersionID, _, _ = strings.Cut(v, ".")
			} else if n, ok := debianCodenames[strings.Split(v, "/")[0]]; ok {
				o.VersionID = n
			}
		}
	}
	o.Ecosystem = osEcosystem(o.ID, o.VersionID, kv)
	return o
}

// osEcosystem names the OSV ecosystem of the OS packages, precise to the
// release the advisories are published for.
func osEcosystem(id, version string, kv map[string]string) string {
	major, _, _ := strings.Cut(version, ".")
	switch id {
	case "debian":
		if major == "" {
			return "Debian"
		}
		return "Debian:" + major
	case "ubuntu":
		return join("Ubuntu", version)
	case "alpine":
		// Advisories are per minor release: 3.16.9 -> v3.16; edge builds
		// look like 3.21.0_alpha20240807.
		v, _, _ := strings.Cut(version, "_")
		parts := strings.Split(v, ".")
		if len(parts) < 2 {
			return "Alpine"
		}
		return "Alpine:v" + parts[0] + "." + parts[1]
	case "wolfi":
		return "Wolfi"
	case "chainguard":
		return "Chainguard"
	case "minimos":
		return "MinimOS"
	case "rhel":
		// CPE_NAME="cpe:/o:redhat:enterprise_linux:9::baseos" gives the
		// suffix OSV uses: "Red Hat:enterprise_linux:9::baseos".
		if _, suffix, ok := strings.Cut(kv["CPE_NAME"], ":redhat:"); ok {
			return "Red Hat:" + suffix
		}
		return "Red Hat"
	case "rocky":
		return join("Rocky Linux", major)
	case "almalinux":
		return join("AlmaLinux", major)
	case "opensuse-leap":
		return join("openSUSE", prefixed("Leap ", version))
	case "sles":
		// 15.5 -> "Linux Enterprise Server 15 SP5"
		minor := ""
		if _, m, ok := strings.Cut(version, "."); ok && m != "0" {
			minor = " SP" + m
		}
		return join("SUSE", prefixed("Linux Enterprise Server ", major+minor))
	case "azurelinux", "mariner":
		return join("Azure Linux", version)
	case "photon":
		return join("Photon OS", version)
	case "mageia":
		return join("Mageia", version)
	case "openEuler":
		return join("openEuler", version)
	}
	return ""
}

func join(eco, release string) string {
	if release == "" {
		return eco
	}
	return eco + ":" + release
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte{'\n'})
	return strings.TrimSpace(string(line))
}

// parseOSRelease reads the KEY=value lines of os-release(5); values may be
// quoted with double or single quotes and use backslash escapes.
func parseOSRelease(data []byte) map[string]string {
	kv := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			if u, err := strconv.Unquote(`"` + strings.ReplaceAll(v[1:len(v)-1], `"`, `\"`) + `"`); err == nil {
				v = u
			} else {
				v = v[1 : len(v)-1]
			}
		}
		kv[strings.TrimSpace(k)] = v
	}
	return kv
}

// osPURL builds the purl of an OS package once the OS is known, in the form
// SBOM consumers expect (arch, distro, epoch and the source package as
// "upstream"): pkg:deb/debian/bash@5.2.15-2+b8?arch=amd64&distro=debian-12.
func osPURL(p Package, info *osInfo, o OS) string {
	typ, ns := "", o.ID
	version := p.Version
	q := map[string]string{}
	switch p.Type {
	case "dpkg":
		typ = purl.TypeDebian
		if ns == "" {
			ns = "debian"
		}
	case "apk":
		typ = purl.TypeApk
		if ns == "" {
			ns = "alpine"
		}
	case "rpm":
		typ = purl.TypeRPM
		if ns == "" {
			ns = "redhat"
		}
		// The epoch goes in its own qualifier; the purl version is V-R.
		if info.epoch > 0 {
			q["epoch"] = strconv.Itoa(info.epoch)
			version = strings.TrimPrefix(version, strconv.Itoa(info.epoch)+":")
		}
	default:
		return ""
	}
	if info.arch != "" {
		q["arch"] = info.arch
	}
	if o.ID != "" && o.VersionID != "" {
		q["distro"] = o.ID + "-" + o.VersionID
	}
	if p.SourceName != "" || p.SourceVersion != "" {
		up := cmp.Or(p.SourceName, p.Name)
		if p.SourceVersion != "" {
			up += "@" + p.SourceVersion
		}
		q["upstream"] = up
	}
	u := purl.PackageURL{
		Type:       typ,
		Namespace:  strings.ToLower(ns),
		Name:       p.Name,
		Version:    version,
		Qualifiers: purl.QualifiersFromMap(q),
	}
	return u.String()
}
