package scanner

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/google/osv-scalibr/extractor"
	"github.com/google/osv-scalibr/extractor/filesystem"
	"github.com/google/osv-scalibr/purl"
)

// Lockfiles and install records of PHP, .NET and Rust applications. The
// Composer, deps.json and Cargo parsers are ours: osv-scalibr has none for
// vendor/composer/installed.json, its composer.lock extractor finds each
// package's line with a query that reads the file from the start (a
// lockfile of n packages costs n passes over it), its deps.json extractor
// decodes the whole file twice (once into a generic map, several times the
// file's size) and logs a line per malformed library, and its Cargo.lock
// extractor keeps path and git dependencies, which are no crates.io
// packages. packages.lock.json goes through osv-scalibr's extractor.

// nameVersion is one package a lockfile names.
type nameVersion struct{ name, version string }

// isComposerInstalled accepts Composer's record of what it installed,
// vendor/composer/installed.json.
func isComposerInstalled(p string) bool {
	return path.Base(p) == "installed.json" && path.Base(path.Dir(p)) == "composer" && path.Base(path.Dir(path.Dir(p))) == "vendor"
}

// isAppLockfile accepts a lockfile named base that belongs to an
// application, not one shipped inside a dependency's sources: libraries
// under vendor/ (Composer's install directory, `cargo vendor`'s output)
// and crates in Cargo's download cache (cargo/registry, cargo/git) carry
// their own lockfiles, which list what their authors developed with,
// not what the image runs.
func isAppLockfile(p, base string) bool {
	if path.Base(p) != base {
		return false
	}
	for dir := path.Dir(p); dir != "." && dir != "/" && dir != ""; dir = path.Dir(dir) {
		switch path.Base(dir) {
		case "vendor":
			return false
		case "registry", "git":
			if b := path.Base(path.Dir(dir)); b == "cargo" || b == ".cargo" {
				return false
			}
		}
	}
	return true
}

// composerPackage is the part of a package entry we read; Composer writes
// the same entry in composer.lock and installed.json.
type composerPackage struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// parseComposerJSON reads composer.lock ({"packages": [...],
// "packages-dev": [...]}) and installed.json (Composer 2: {"packages":
// [...]}, Composer 1: a list of packages). Versions are kept as Composer
// wrote them ("v5.4.3"): that is what the user sees in the lockfile, and
// matching folds the "v" (vulndb's Composer order). Entries without a
// "vendor/name" name or a version are skipped: they are no Packagist
// packages.
func parseComposerJSON(data []byte) ([]nameVersion, error) {
	var pkgs []composerPackage
	switch trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff"); {
	case len(trimmed) > 0 && trimmed[0] == '[':
		if err := json.Unmarshal(trimmed, &pkgs); err != nil {
			return nil, fmt.Errorf("parse Composer package list: %w", err)
		}
	default:
		var doc struct {
			Packages    []composerPackage `json:"packages"`
			PackagesDev []composerPackage `json:"packages-dev"`
		}
		if err := json.Unmarshal(trimmed, &doc); err != nil {
			return nil, fmt.Errorf("parse Composer JSON: %w", err)
		}
		pkgs = append(doc.Packages, doc.PackagesDev...)
	}
	var out []nameVersion
	for _, p := range pkgs {
		vendor, name, ok := strings.Cut(p.Name, "/")
		if !ok || vendor == "" || name == "" || strings.Contains(name, "/") || p.Version == "" {
			continue
		}
		out = append(out, nameVersion{p.Name, p.Version})
	}
	return out, nil
}

// parseCargoLock reads the [[package]] tables of a Cargo.lock (formats 1
// to 4: the same tables, "version = N" or a [metadata] table aside) and
// returns the packages whose source is a registry ("registry+…", or
// "sparse+…" for the sparse index). Packages without a source are the
// workspace's own and path dependencies; "git+…" sources are git
// dependencies: neither is a published crate.
//
// Cargo writes the file in one fixed layout (one key = "string" per line
// in each table), read here line by line: a general TOML parser recurses
// into nested arrays, which an 8 MiB hostile file can nest millions deep.
func parseCargoLock(data []byte) ([]nameVersion, error) {
	var out []nameVersion
	var cur struct {
		in                    bool
		name, version, source string
	}
	flush := func() {
		if cur.in && cur.name != "" && cur.version != "" && isRegistrySource(cur.source) {
			out = append(out, nameVersion{cur.name, cur.version})
		}
		cur.in, cur.name, cur.version, cur.source = false, "", "", ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	// Lines of a Cargo.lock are short; a longer one is not Cargo's.
	sc.Buffer(make([]byte, 0, 4096), maxCargoLockLine)
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || l[0] == '#':
		case l == "[[package]]":
			flush()
			cur.in = true
		case l[0] == '[':
			flush() // [metadata] and anything else ends the package table
		case cur.in:
			key, val, ok := strings.Cut(l, "=")
			if !ok {
				continue // a continuation line of a dependencies array
			}
			key = strings.TrimSpace(key)
			if key != "name" && key != "version" && key != "source" {
				continue
			}
			s, err := strconv.Unquote(strings.TrimSpace(val))
			if err != nil {
				return nil, fmt.Errorf("parse Cargo.lock line %d: %s is not a string", line, key)
			}
			switch key {
			case "name":
				cur.name = s
			case "version":
				cur.version = s
			case "source":
				cur.source = s
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("parse Cargo.lock line %d: longer than %d bytes", line+1, maxCargoLockLine)
		}
		return nil, fmt.Errorf("parse Cargo.lock: %w", err)
	}
	flush()
	return out, nil
}

// maxCargoLockLine bounds a line of Cargo.lock; Cargo's longest are
// checksums and git source URLs, well under it.
const maxCargoLockLine = 64 << 10

func isRegistrySource(s string) bool {
	return strings.HasPrefix(s, "registry+") || strings.HasPrefix(s, "sparse+")
}

// packagesOf turns parsed lockfile entries into scalibr packages of a purl
// type, one per name and version: the same package can be named twice in
// a file (packages.lock.json lists it once per target framework).
func packagesOf(p, purlType string, nvs []nameVersion) []*extractor.Package {
	seen := make(map[nameVersion]bool, len(nvs))
	var out []*extractor.Package
	for _, nv := range nvs {
		if seen[nv] {
			continue
		}
		seen[nv] = true
		out = append(out, &extractor.Package{
			Name: nv.name, Version: nv.version, PURLType: purlType,
			Location: extractor.LocationFromPath(p),
		})
	}
	return out
}

// lockfileExtract adapts a parser of ours to an extractorSpec's extract.
func lockfileExtract(purlType string, parse func([]byte) ([]nameVersion, error)) func(context.Context, *filesystem.ScanInput) ([]*extractor.Package, error) {
	return func(_ context.Context, in *filesystem.ScanInput) ([]*extractor.Package, error) {
		data, err := inputBytes(in)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", in.Path, err)
		}
		nvs, err := parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in.Path, err)
		}
		return packagesOf(in.Path, purlType, nvs), nil
	}
}

// parseDepsJSON returns the NuGet packages of a .NET application's
// *.deps.json: the "libraries" keyed "Name/version" whose type is
// "package". The application itself and the projects it references are
// "project" libraries, which no feed publishes.
func parseDepsJSON(data []byte) ([]nameVersion, error) {
	var doc struct {
		Libraries map[string]struct {
			Type string `json:"type"`
		} `json:"libraries"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse deps.json: %w", err)
	}
	out := make([]nameVersion, 0, len(doc.Libraries))
	for key, lib := range doc.Libraries {
		name, version, ok := strings.Cut(key, "/")
		if !ok || name == "" || version == "" || strings.Contains(version, "/") || !strings.EqualFold(lib.Type, "package") {
			continue
		}
		out = append(out, nameVersion{name, version})
	}
	// The map has no order; the inventory should not depend on it.
	slices.SortFunc(out, func(a, b nameVersion) int {
		return cmp.Or(strings.Compare(a.name, b.name), strings.Compare(a.version, b.version))
	})
	return out, nil
}

// isDepsJSON accepts the dependency manifests .NET writes beside an
// application: <app>.deps.json.
func isDepsJSON(p string) bool {
	base := path.Base(p)
	return strings.HasSuffix(base, ".deps.json") && len(base) > len(".deps.json")
}

// nugetLockPackages keeps what osv-scalibr found in a packages.lock.json
// once per name and version: every package comes once per target
// framework ("Project" entries have no resolved version and are dropped
// later, with every package that has none).
func nugetLockPackages(p string, found []*extractor.Package) []*extractor.Package {
	nvs := make([]nameVersion, 0, len(found))
	for _, sp := range found {
		if sp != nil {
			nvs = append(nvs, nameVersion{sp.Name, sp.Version})
		}
	}
	return packagesOf(p, purl.TypeNuget, nvs)
}
