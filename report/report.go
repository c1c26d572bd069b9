// Package report writes scan results for people (a table) and for tools
// (JSON, SARIF).
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/vex"
)

// Result is one scanned image.
type Result struct {
	Image     string             `json:"image"`
	Inventory *scanner.Inventory `json:"inventory"`
	Findings  []vulndb.Finding   `json:"findings"`
	DBVersion string             `json:"dbVersion,omitempty"`
	// Suppressed are findings VEX statements took out of Findings, with
	// the statement that did; VEX notes statements read but not honoured.
	Suppressed []vex.Suppressed `json:"suppressed,omitempty"`
	VEX        []string         `json:"vex,omitempty"`
}

// Severities from most to least severe, as the --severity help and the
// table summary list them.
var severities = []string{vulndb.SeverityCritical, vulndb.SeverityHigh, vulndb.SeverityMedium, vulndb.SeverityLow, vulndb.SeverityUnknown}

// ParseSeverities reads a --severity list ("HIGH,CRITICAL").
func ParseSeverities(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	for _, part := range strings.Split(s, ",") {
		level := strings.ToUpper(strings.TrimSpace(part))
		if !slices.Contains(severities, level) {
			return nil, fmt.Errorf("unknown severity %q: use %s", part, strings.Join(severities, ", "))
		}
		out = append(out, level)
	}
	return out, nil
}

// Filter keeps findings of the given severities (all when levels is empty).
func Filter(findings []vulndb.Finding, levels []string) []vulndb.Finding {
	if len(levels) == 0 {
		return findings
	}
	var out []vulndb.Finding
	for _, f := range findings {
		if slices.Contains(levels, f.Severity) {
			out = append(out, f)
		}
	}
	return out
}

// JSON writes the whole result.
func JSON(w io.Writer, r Result) error {
	if r.Findings == nil {
		r.Findings = []vulndb.Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Table writes a summary and one row per finding, most severe first.
func Table(w io.Writer, r Result) error {
	inv := r.Inventory
	counts := map[string]int{}
	vulns := 0
	for _, f := range r.Findings {
		if f.Kind == vulndb.KindVulnerability { // other kinds are counted apart (otherKinds)
			counts[f.Severity]++
			vulns++
		}
	}
	osName := inv.OS.PrettyName
	if osName == "" {
		osName = "unknown OS"
	}
	var summary []string
	for _, s := range severities {
		summary = append(summary, fmt.Sprintf("%s: %d", s, counts[s]))
	}
	fmt.Fprintf(w, "%s (%s)\n", r.Image, osName)
	fmt.Fprintf(w, "%d packages in %d layers, %d vulnerabilities (%s)%s\n", len(inv.Packages), len(inv.Layers), vulns, strings.Join(summary, ", "), otherKinds(r.Findings))
	if len(r.Suppressed) > 0 {
		fmt.Fprintf(w, "%d suppressed by VEX (listed with --format json)\n", len(r.Suppressed))
	}
	for _, n := range r.VEX {
		fmt.Fprintf(w, "VEX: %s\n", printable(n))
	}
	if len(r.Findings) == 0 {
		return nil
	}
	findings := slices.Clone(r.Findings)
	slices.SortStableFunc(findings, func(a, b vulndb.Finding) int {
		// Most severe first, by the order vulndb itself uses.
		if d := vulndb.SeverityRank(b.Severity) - vulndb.SeverityRank(a.Severity); d != 0 {
			return d
		}
		if a.Package != b.Package {
			return strings.Compare(a.Package, b.Package)
		}
		return strings.Compare(a.ID, b.ID)
	})
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// A KIND column only when some finding is not a vulnerability, so a
	// plain vulnerability scan reads as before; a file finding shows its
	// path where a package would be.
	kinds := anyKind(findings)
	if kinds {
		fmt.Fprintln(tw, "PACKAGE/PATH\tINSTALLED\tFIXED\tID\tKIND\tSEVERITY\tLAYER")
	} else {
		fmt.Fprintln(tw, "PACKAGE\tINSTALLED\tFIXED\tID\tSEVERITY\tLAYER")
	}
	for _, f := range findings {
		fixed := strings.Join(f.FixedVersions, ", ")
		if fixed == "" {
			fixed = "-"
		}
		what, installed := f.Package, f.InstalledVersion
		if inFile(f) {
			what, installed = fileOf(f), "-"
		}
		if kinds {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", what, installed, fixed, printable(f.ID), kindName(f), f.Severity, layerOf(inv, f))
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Package, f.InstalledVersion, fixed, f.ID, f.Severity, layerOf(inv, f))
	}
	return tw.Flush()
}

// layerOf names the layer that brought the vulnerable package, short.
func layerOf(inv *scanner.Inventory, f vulndb.Finding) string {
	if f.Layer != "" {
		// A file finding names its layer itself (its Query means nothing).
		return shortDigest(f.Layer)
	}
	if f.Query < 0 || f.Query >= len(inv.Packages) {
		return "-"
	}
	p := inv.Packages[f.Query]
	short := strings.TrimPrefix(p.Layer, "sha256:")
	if len(short) > 12 {
		short = short[:12]
	}
	return fmt.Sprintf("%d (%s)", p.LayerIndex, short)
}
