// Package osvgen builds a full-size OSV database for benchmarks by
// multiplying real records: each copy keeps its record's shape (ranges,
// versions, severities, prose) and gets a new id and new package names.
// It writes one all.zip per ecosystem, laid out as osv.dev serves them
// (<out>/<Ecosystem>/all.zip), so 'portcullis db import' and 'db update'
// read them exactly as in production. It is not part of Portcullis.
package osvgen

import (
	"archive/zip"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Share is how many records one ecosystem gets, and which real records
// (by their own base ecosystem) it is made from. Ecosystems without real
// records here borrow the shape of the nearest one: Ubuntu's of Debian
// (dpkg versions, source packages), the Red Hat family's of Alpine
// ("introduced 0, fixed X" on OS packages).
type Share struct {
	Ecosystem string // as written in the records: "Debian:12", "PyPI"
	Archive   string // base ecosystem, the archive's directory: "Debian"
	From      string // base ecosystem of the real records copied
	Count     int
}

// FullSize is about 300,000 records split roughly as osv.dev splits the
// ecosystems Portcullis downloads (OS distributions first).
func FullSize() []Share {
	return []Share{
		{"Debian:12", "Debian", "Debian", 65000},
		{"Ubuntu:22.04", "Ubuntu", "Debian", 55000},
		{"Alpine:v3.16", "Alpine", "Alpine", 45000},
		{"AlmaLinux:9", "AlmaLinux", "Alpine", 15000},
		{"Rocky Linux:9", "Rocky Linux", "Alpine", 15000},
		{"npm", "npm", "npm", 30000},
		{"PyPI", "PyPI", "PyPI", 20000},
		{"Maven", "Maven", "Maven", 20000},
		{"Packagist", "Packagist", "Packagist", 10000},
		{"Go", "Go", "Go", 8000},
		{"RubyGems", "RubyGems", "RubyGems", 6000},
		{"crates.io", "crates.io", "crates.io", 6000},
		{"NuGet", "NuGet", "NuGet", 5000},
	}
}

// Total sums the counts of shares.
func Total(shares []Share) int {
	n := 0
	for _, s := range shares {
		n += s.Count
	}
	return n
}

// Templates are the real records by base ecosystem ("Debian", "Go").
type Templates map[string][]map[string]any

// maxTemplateSize bounds one real record read (the largest Go and GHSA
// records are tens of kB).
const maxTemplateSize = 4 << 20

// LoadTemplates reads every *.json record in dirs (not recursively) and
// files it under the base ecosystem of its first affected package.
func LoadTemplates(dirs ...string) (Templates, error) {
	t := Templates{}
	for _, dir := range dirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			return nil, fmt.Errorf("list records in %s: %w", dir, err)
		}
		slices.Sort(files)
		for _, f := range files {
			info, err := os.Stat(f)
			if err != nil {
				return nil, fmt.Errorf("read record %s: %w", f, err)
			}
			if info.Size() > maxTemplateSize {
				continue
			}
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read record %s: %w", f, err)
			}
			var r map[string]any
			if err := json.Unmarshal(data, &r); err != nil {
				return nil, fmt.Errorf("decode record %s: %w", f, err)
			}
			eco := baseEcosystem(r)
			if eco == "" {
				continue
			}
			t[eco] = append(t[eco], r)
		}
	}
	return t, nil
}

func baseEcosystem(r map[string]any) string {
	aff, _ := r["affected"].([]any)
	for _, a := range aff {
		am, _ := a.(map[string]any)
		pkg, _ := am["package"].(map[string]any)
		if eco, _ := pkg["ecosystem"].(string); eco != "" {
			base, _, _ := strings.Cut(eco, ":")
			return base
		}
	}
	return ""
}

// Options choose what Write changes.
type Options struct {
	// Revision, when not 0, revises one record in every RevisePer (its
	// summary and modified time change, so its content hash does): a
	// daily update of the same database.
	Revision  int
	RevisePer int
}

// Write writes one all.zip per share under out (<out>/<Archive>/all.zip)
// and returns the archives' paths. Records are streamed to the archives:
// memory holds only the templates.
func Write(out string, shares []Share, t Templates, opt Options) ([]string, error) {
	var paths []string
	for _, s := range shares {
		tmpl := t[s.From]
		if len(tmpl) == 0 {
			return nil, fmt.Errorf("generate %s: no real %s records to copy", s.Ecosystem, s.From)
		}
		dir := filepath.Join(out, s.Archive)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("generate %s: %w", s.Ecosystem, err)
		}
		path := filepath.Join(dir, "all.zip")
		if err := writeArchive(path, s, tmpl, opt); err != nil {
			return nil, fmt.Errorf("generate %s: %w", path, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

func writeArchive(path string, s Share, tmpl []map[string]any, opt Options) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	zw := zip.NewWriter(f)
	for i := range s.Count {
		r := Record(s, tmpl, i, opt)
		data, err := json.Marshal(r)
		if err != nil {
			f.Close()
			return err
		}
		w, err := zw.Create(r["id"].(string) + ".json")
		if err == nil {
			_, err = w.Write(data)
		}
		if err != nil {
			f.Close()
			return err
		}
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Record is the i-th record of share s: template i mod len(tmpl), copy
// i / len(tmpl). Copy 0 keeps the real id and names; copy k gets the id
// "<id>-K<k>" and package names with "-k<k>" appended (after the last
// path element for Go modules, the artifact for Maven).
func Record(s Share, tmpl []map[string]any, i int, opt Options) map[string]any {
	src := tmpl[i%len(tmpl)]
	k := i / len(tmpl)
	r := make(map[string]any, len(src))
	for key, v := range src {
		r[key] = v
	}
	id, _ := src["id"].(string)
	prefix := ""
	if s.Ecosystem != s.From && !strings.HasPrefix(s.Ecosystem, s.From) {
		// Records of a borrowed shape get their own id space.
		prefix = strings.ToUpper(strings.Fields(s.Archive)[0]) + "-"
	}
	r["id"] = prefix + id + suffix("-K", k)
	var affected []any
	aff, _ := src["affected"].([]any)
	for _, a := range aff {
		am, _ := a.(map[string]any)
		pkg, _ := am["package"].(map[string]any)
		name, _ := pkg["name"].(string)
		eco, _ := pkg["ecosystem"].(string)
		if base, _, _ := strings.Cut(eco, ":"); base != s.From {
			continue // a record naming several ecosystems keeps only ours
		}
		na := make(map[string]any, len(am))
		for key, v := range am {
			na[key] = v
		}
		np := map[string]any{"ecosystem": s.Ecosystem, "name": rename(s.From, name, k)}
		if purl, ok := pkg["purl"].(string); ok && k == 0 {
			np["purl"] = purl
		}
		na["package"] = np
		affected = append(affected, na)
	}
	r["affected"] = affected
	if opt.Revision != 0 && opt.RevisePer > 0 && i%opt.RevisePer == 0 {
		summary, _ := src["summary"].(string)
		r["summary"] = strings.TrimSpace(summary + " (revision " + strconv.Itoa(opt.Revision) + ")")
		r["modified"] = fmt.Sprintf("2026-12-%02dT00:00:00Z", 1+opt.Revision%28)
	}
	return r
}

func suffix(sep string, k int) string {
	if k == 0 {
		return ""
	}
	return sep + strconv.Itoa(k)
}

// rename gives copy k of a package a new name that stays valid in its
// ecosystem.
func rename(eco, name string, k int) string {
	if k == 0 {
		return name
	}
	switch eco {
	case "Go":
		if name == "stdlib" || name == "toolchain" {
			return "example.com/stdlib" + suffix("/k", k)
		}
		return name + suffix("/k", k)
	case "Maven":
		return name + suffix("-k", k) // group:artifact-kN
	}
	return name + suffix("-k", k)
}

// ErrNoTemplates is returned by Check when a share has no real records.
var ErrNoTemplates = errors.New("no real records for a share")

// Check says which shares have no real records in t.
func Check(shares []Share, t Templates) error {
	var missing []string
	for _, s := range shares {
		if len(t[s.From]) == 0 {
			missing = append(missing, s.Ecosystem+" (from "+s.From+")")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrNoTemplates, strings.Join(missing, ", "))
	}
	return nil
}
