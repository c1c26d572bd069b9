package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

// pkg is one package as either tool reports it: Name is the installed
// (binary) package, Source the package OSV records name (the Debian source
// package; the module itself for Go).
type pkg struct {
	Ecosystem, Name, Version, Source, Location string
	// SourceVersion is the source package's version when portcullis
	// reports one that differs from Version (osv-scanner reports none).
	SourceVersion string
}

// vuln is one reported vulnerability with every name it goes by.
type vuln struct {
	ID    string
	Names []string // ID, aliases, upstream
}

type report struct {
	tool     string
	packages []pkg
	findings map[pkg][]vuln
}

func (r *report) byName() map[string][]pkg {
	m := map[string][]pkg{}
	for _, p := range r.packages {
		k := baseEco(p.Ecosystem) + "/" + p.Name
		m[k] = append(m[k], p)
	}
	return m
}

func baseEco(e string) string { b, _, _ := strings.Cut(e, ":"); return b }

func readPortcullis(file string) (*report, error) {
	var doc struct {
		Inventory struct {
			Packages []struct {
				Name, Version, Ecosystem, SourceName, SourceVersion, Location string
			} `json:"packages"`
		} `json:"inventory"`
		Findings []struct {
			ID               string   `json:"id"`
			Aliases          []string `json:"aliases"`
			Upstream         []string `json:"upstream"`
			Ecosystem        string   `json:"ecosystem"`
			Package          string   `json:"package"`
			AffectedPackage  string   `json:"affectedPackage"`
			InstalledVersion string   `json:"installedVersion"`
		} `json:"findings"`
	}
	if err := readJSON(file, &doc); err != nil {
		return nil, err
	}
	r := &report{tool: "portcullis", findings: map[pkg][]vuln{}}
	byNV := map[[3]string]pkg{}
	for _, p := range doc.Inventory.Packages {
		q := pkg{Ecosystem: p.Ecosystem, Name: p.Name, Version: p.Version, Source: p.SourceName, Location: p.Location, SourceVersion: p.SourceVersion}
		if q.Source == "" {
			q.Source = q.Name
		}
		r.packages = append(r.packages, q)
		byNV[[3]string{q.Ecosystem, q.Name, q.Version}] = q
	}
	for _, f := range doc.Findings {
		q, ok := byNV[[3]string{f.Ecosystem, f.Package, f.InstalledVersion}]
		if !ok {
			q = pkg{Ecosystem: f.Ecosystem, Name: f.Package, Version: f.InstalledVersion, Source: f.Package}
		}
		if f.AffectedPackage != "" {
			q.Source = f.AffectedPackage
		}
		r.findings[q] = append(r.findings[q], vuln{ID: f.ID, Names: names(f.ID, f.Aliases, f.Upstream)})
	}
	return r, nil
}

func readOSVScanner(file string) (*report, error) {
	var doc struct {
		Results []struct {
			Source struct {
				Path string `json:"path"`
			} `json:"source"`
			Packages []struct {
				Package struct {
					Name          string `json:"name"`
					OSPackageName string `json:"os_package_name"`
					Version       string `json:"version"`
					Ecosystem     string `json:"ecosystem"`
				} `json:"package"`
				Vulnerabilities []struct {
					ID       string   `json:"id"`
					Aliases  []string `json:"aliases"`
					Upstream []string `json:"upstream"`
				} `json:"vulnerabilities"`
			} `json:"packages"`
		} `json:"results"`
	}
	if err := readJSON(file, &doc); err != nil {
		return nil, err
	}
	r := &report{tool: "osv-scanner", findings: map[pkg][]vuln{}}
	for _, res := range doc.Results {
		for _, p := range res.Packages {
			// osv-scanner names an OS package by its source package and
			// keeps the installed name in os_package_name.
			q := pkg{Ecosystem: p.Package.Ecosystem, Name: p.Package.Name, Version: p.Package.Version,
				Source: p.Package.Name, Location: res.Source.Path}
			if p.Package.OSPackageName != "" {
				q.Name = p.Package.OSPackageName
			}
			r.packages = append(r.packages, q)
			for _, v := range p.Vulnerabilities {
				r.findings[q] = append(r.findings[q], vuln{ID: v.ID, Names: names(v.ID, v.Aliases, v.Upstream)})
			}
		}
	}
	return r, nil
}

func names(id string, lists ...[]string) []string {
	out := []string{id}
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

func readJSON(file string, v any) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// compareCmd prints the differences between the two tools' package
// inventories and findings, each with the reason it can be traced to.
// Findings are compared as (package, OSV id) pairs; a vulnerability the
// other tool reports under an alias or upstream id counts as the same.
// It exits non-zero only on unreadable input: differences are data.
func compareCmd(args []string) error {
	fs := flag.NewFlagSet("compare", flag.ExitOnError)
	pFile := fs.String("portcullis", "", "portcullis scan --format json `output`")
	oFile := fs.String("osv", "", "osv-scanner --format json --all-packages `output`")
	label := fs.String("label", "", "`name` of the image, for the heading")
	fs.Parse(args)
	if *pFile == "" || *oFile == "" {
		return errors.New("compare: -portcullis and -osv are required")
	}
	p, err := readPortcullis(*pFile)
	if err != nil {
		return err
	}
	o, err := readOSVScanner(*oFile)
	if err != nil {
		return err
	}
	fmt.Printf("== %s ==\n", *label)
	compareInventories(p, o)
	real, aliased := compareFindings(p, o)
	switch {
	case real == 0 && aliased == 0:
		fmt.Println("   verdict: same findings")
	case real == 0:
		fmt.Printf("   verdict: same vulnerabilities; %d pairs named by another id of the same record\n", aliased)
	default:
		fmt.Printf("   verdict: findings differ: %d pairs (see above), and %d named by another id\n", real, aliased)
	}
	return nil
}

func compareInventories(p, o *report) {
	pm, om := p.byName(), o.byName()
	var onlyP, onlyO, differ []string
	same := 0
	for _, k := range sortedKeys(pm) {
		ops, ok := om[k]
		if !ok {
			for _, x := range pm[k] {
				onlyP = append(onlyP, fmt.Sprintf("%s %s (%s) in %s", x.Name, x.Version, x.Ecosystem, x.Location))
			}
			continue
		}
		a, b := pm[k][0], ops[0]
		var d []string
		if len(pm[k]) != len(ops) {
			d = append(d, fmt.Sprintf("%d vs %d copies", len(pm[k]), len(ops)))
		}
		if a.Version != b.Version {
			d = append(d, fmt.Sprintf("version %q vs %q", a.Version, b.Version))
		}
		if a.Ecosystem != b.Ecosystem {
			d = append(d, fmt.Sprintf("ecosystem %q vs %q", a.Ecosystem, b.Ecosystem))
		}
		if a.Source != b.Source {
			d = append(d, fmt.Sprintf("source package %q vs %q", a.Source, b.Source))
		}
		if len(d) > 0 {
			differ = append(differ, a.Name+": "+strings.Join(d, ", ")+" (portcullis vs osv-scanner)")
		} else {
			same++
		}
	}
	for _, k := range sortedKeys(om) {
		if _, ok := pm[k]; !ok {
			for _, x := range om[k] {
				onlyO = append(onlyO, fmt.Sprintf("%s %s (%s) in %s", x.Name, x.Version, x.Ecosystem, x.Location))
			}
		}
	}
	fmt.Printf("   packages: portcullis %d, osv-scanner %d; identical (name, version, ecosystem, source) %d\n", len(p.packages), len(o.packages), same)
	list("only portcullis", onlyP)
	list("only osv-scanner", onlyO)
	list("different", differ)
}

// compareFindings lists the pairs only one tool found and counts them: real
// differences, and pairs the other tool reports under an alias.
func compareFindings(p, o *report) (real, aliased int) {
	type pair struct{ eco, pkg, id string }
	index := func(r *report) (map[pair]vuln, map[string]map[string]string) {
		pairs := map[pair]vuln{}
		alias := map[string]map[string]string{} // package -> any name -> id
		for q, vs := range r.findings {
			k := baseEco(q.Ecosystem) + "/" + q.Name
			if alias[k] == nil {
				alias[k] = map[string]string{}
			}
			for _, v := range vs {
				pairs[pair{baseEco(q.Ecosystem), q.Name, v.ID}] = v
				for _, n := range v.Names {
					alias[k][n] = v.ID
				}
			}
		}
		return pairs, alias
	}
	pp, pa := index(p)
	op, oa := index(o)
	pkgs := map[string]map[string]pkg{"portcullis": {}, "osv-scanner": {}}
	for tool, r := range map[string]*report{"portcullis": p, "osv-scanner": o} {
		for _, q := range r.packages {
			pkgs[tool][baseEco(q.Ecosystem)+"/"+q.Name] = q
		}
	}
	sources := func(m map[pair]vuln, r *report) int {
		s := map[string]bool{}
		for q := range r.findings {
			s[baseEco(q.Ecosystem)+"/"+q.Source] = true
		}
		return len(s)
	}
	explain := func(k pair, v vuln, self, other string, otherAlias map[string]map[string]string) string {
		key := k.eco + "/" + k.pkg
		for _, n := range v.Names {
			if id, ok := otherAlias[key][n]; ok && id != k.id {
				aliased++
				return fmt.Sprintf("reported by %s as %s (alias)", other, id)
			}
		}
		real++
		a, aok := pkgs[self][key]
		b, bok := pkgs[other][key]
		switch {
		case !bok:
			return fmt.Sprintf("%s has no package %s", other, k.pkg)
		case a.Version != b.Version:
			return fmt.Sprintf("versions differ: %s %q, %s %q", self, a.Version, other, b.Version)
		case a.Source != b.Source:
			return fmt.Sprintf("source packages differ: %s %q, %s %q", self, a.Source, other, b.Source)
		case !aok:
			return "package not in " + self + "'s inventory"
		}
		for _, x := range []struct {
			tool string
			p    pkg
		}{{self, a}, {other, b}} {
			if x.p.SourceVersion != "" && x.p.SourceVersion != x.p.Version {
				other := map[string]string{"portcullis": "osv-scanner", "osv-scanner": "portcullis"}[x.tool]
				return fmt.Sprintf("%s matches source %s's version %q (what Debian records name), %s the installed version %q",
					x.tool, x.p.Source, x.p.SourceVersion, other, x.p.Version)
			}
		}
		return fmt.Sprintf("same package, version %q and source %q in both: the matchers disagree on this record", a.Version, a.Source)
	}
	var onlyP, onlyO []string
	same := 0
	for k, v := range pp {
		if _, ok := op[k]; ok {
			same++
			continue
		}
		onlyP = append(onlyP, fmt.Sprintf("%s %s: %s", k.pkg, k.id, explain(k, v, "portcullis", "osv-scanner", oa)))
	}
	for k, v := range op {
		if _, ok := pp[k]; !ok {
			onlyO = append(onlyO, fmt.Sprintf("%s %s: %s", k.pkg, k.id, explain(k, v, "osv-scanner", "portcullis", pa)))
		}
	}
	sort.Strings(onlyP)
	sort.Strings(onlyO)
	fmt.Printf("   findings (installed package, OSV id): portcullis %d on %d source packages, osv-scanner %d on %d source packages; in both %d\n",
		len(pp), sources(pp, p), len(op), sources(op, o), same)
	list("only portcullis", onlyP)
	list("only osv-scanner", onlyO)
	return real, aliased
}

func list(title string, items []string) {
	if len(items) == 0 {
		return
	}
	fmt.Printf("   %s (%d):\n", title, len(items))
	for _, it := range items {
		fmt.Printf("     - %s\n", it)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
