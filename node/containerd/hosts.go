// Package containerd writes containerd's per-registry host configuration
// (<certs-dir>/<registry>/hosts.toml) so that every pull a node makes goes
// through a Portcullis mirror and, unless told to fail open, never reaches
// the origin registry.
//
// How containerd (1.5 to 2.x, remotes/docker/config/hosts.go) reads these
// files decides what we write:
//   - For a reference on host H it uses <certs-dir>/H (also H with ":port"
//     spelled "_port_"), else <certs-dir>/_default, else no file at all.
//   - A hosts.toml yields the [host."…"] entries in file order followed by
//     one more entry built from the top-level keys, whose address is
//     `server`. With `server` unset that last entry becomes the origin
//     (https://H, or https://registry-1.docker.io for docker.io): the
//     silent fallback taken whenever every mirror fails. Setting `server`
//     to the mirror itself leaves containerd no origin to try.
//   - A hosts.toml that does not parse, or has no [host] table, is logged
//     and ignored, and containerd falls back to the origin. So the files are
//     always written whole (temporary file + rename) and always carry a
//     [host."<mirror>"] table.
//   - containerd adds ?ns=H to every request it sends to a host other than
//     H itself (registry-1.docker.io counts as docker.io), including the
//     `server` entry when that is the mirror; Portcullis routes by it.
package containerd

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Marker is the first line of every file this package writes. A file
// without it belongs to someone else and is never overwritten or removed.
const Marker = "# portcullis-managed: written by 'portcullis node containerd'; edits are overwritten. Delete this line to take the file over."

const (
	// DefaultRegistry is containerd's directory for every registry that has
	// no directory of its own.
	DefaultRegistry = "_default"
	// HostsFile is containerd's per-registry configuration file.
	HostsFile = "hosts.toml"
	// CAFile is the mirror's CA, copied next to hosts.toml so that
	// containerd on the node can read it (the agent's own copy lives in
	// its container).
	CAFile = "portcullis-ca.pem"

	maxNameLen = 255
	// MaxCABytes bounds the CA file read from --ca-file.
	MaxCABytes = 1 << 20
)

// registryName is a host name or IPv4 address with an optional port, the
// form Portcullis upstream names and containerd directory names take.
// IPv6 literals are refused: containerd's directory naming for them is
// ambiguous ("[::1]:5000" → "[::1]_5000_").
var registryName = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$`)

// Registry is one registry whose pulls go through the mirror.
type Registry struct {
	// Name is the registry host as it appears in image references
	// (docker.io, ghcr.io, 127.0.0.1:5001) or DefaultRegistry.
	Name string
	// Origin is where a fail-open configuration lets containerd go when
	// the mirror is down (scheme://host[/path]); empty leaves containerd's
	// own default (https://NAME; registry-1.docker.io for docker.io).
	Origin string
}

// DirName is the directory containerd looks up first for a registry:
// "host:port" is spelled "host_port_" (containerd 1.6 and later check that
// form before "host:port", so a stale "host:port" directory cannot shadow
// ours; an older containerd that only knows "host:port" falls through to
// _default, which goes to the mirror too).
func DirName(name string) string {
	if i := strings.LastIndex(name, ":"); i > 0 {
		return name[:i] + "_" + name[i+1:] + "_"
	}
	return name
}

// ValidateName checks that name can be used as a directory below the
// certs directory and inside hosts.toml.
func ValidateName(name string) error {
	if name == DefaultRegistry {
		return nil
	}
	if len(name) > maxNameLen || !registryName.MatchString(name) {
		return fmt.Errorf("registry name %q: want a lower-case host name with an optional port, like ghcr.io or registry.local:5000", name)
	}
	return nil
}

// ParseMirror checks the mirror address and returns it as scheme://host[:port].
func ParseMirror(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("mirror %q: %w", raw, err)
	}
	if err := checkServerURL(u, false); err != nil {
		return "", fmt.Errorf("mirror %q: %w", raw, err)
	}
	return u.Scheme + "://" + u.Host, nil
}

// ParseOrigin checks an upstream's URL for use as a fail-open `server` and
// returns scheme://host[:port][/path].
func ParseOrigin(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("origin %q: %w", raw, err)
	}
	if err := checkServerURL(u, true); err != nil {
		return "", fmt.Errorf("origin %q: %w", raw, err)
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.EscapedPath(), "/"), nil
}

func checkServerURL(u *url.URL, pathAllowed bool) error {
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return errors.New("want https://HOST[:PORT]")
	case u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return errors.New("want https://HOST[:PORT] without credentials, query or fragment")
	case !pathAllowed && u.Path != "" && u.Path != "/":
		return errors.New("want https://HOST[:PORT] without a path (containerd adds /v2)")
	}
	// Everything written into hosts.toml must be a plain TOML basic string.
	if !tomlSafe(u.Host) || !tomlSafe(u.EscapedPath()) {
		return errors.New("host or path has characters hosts.toml cannot carry")
	}
	return nil
}

// tomlSafe reports whether s can be written between double quotes in a TOML
// basic string as is: printable ASCII without quote or backslash.
func tomlSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// CheckCA checks that pem holds at least one parseable certificate and no
// private key (the file is copied where containerd and admins can read it).
func CheckCA(data []byte) error {
	if len(data) > MaxCABytes {
		return fmt.Errorf("CA file is larger than %d bytes", MaxCABytes)
	}
	n := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("CA file holds a %q block; want only CERTIFICATE blocks", block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("CA file certificate %d: %w", n+1, err)
		}
		n++
	}
	if n == 0 {
		return errors.New("CA file holds no PEM certificate")
	}
	return nil
}

// RenderHosts returns the hosts.toml for reg. mirror comes from
// ParseMirror; withCA says that CAFile is written next to it.
func RenderHosts(reg Registry, mirror string, withCA, failOpen bool) []byte {
	var b strings.Builder
	b.WriteString(Marker + "\n")
	fmt.Fprintf(&b, "# Registry %s: pulls go through the Portcullis mirror %s.\n", reg.Name, mirror)
	caLine := ""
	if withCA {
		// Relative paths are resolved against this file's directory.
		caLine = fmt.Sprintf("ca = %q\n", CAFile)
	}
	if failOpen {
		b.WriteString("# Fail open: when the mirror cannot answer, containerd goes to the origin.\n")
		if reg.Origin != "" {
			fmt.Fprintf(&b, "server = %q\n", reg.Origin)
		}
	} else {
		b.WriteString("# Fail closed: `server` is the mirror too, so containerd has no origin to\n")
		b.WriteString("# fall back to when the mirror is down (it tries the mirror twice).\n")
		fmt.Fprintf(&b, "server = %q\ncapabilities = [\"pull\", \"resolve\"]\n%s", mirror, caLine)
	}
	fmt.Fprintf(&b, "\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", mirror)
	if caLine != "" {
		b.WriteString("  " + caLine)
	}
	return []byte(b.String())
}

// RenderCA returns the CA file written next to hosts.toml: the marker line
// (text outside PEM blocks is ignored by certificate parsers) and the PEM.
func RenderCA(pemData []byte) []byte {
	out := make([]byte, 0, len(Marker)+1+len(pemData)+1)
	out = append(out, Marker+"\n"...)
	out = append(out, pemData...)
	if len(pemData) > 0 && pemData[len(pemData)-1] != '\n' {
		out = append(out, '\n')
	}
	return out
}
