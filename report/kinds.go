package report

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

// Findings of other kinds than vulnerabilities (malicious packages,
// known-bad files, leaked secrets) go through the same outputs; these
// helpers say how each output shows them.

// kindName names a finding's kind for people and tools: "vulnerability"
// for the kindless.
func kindName(f vulndb.Finding) string {
	if f.Kind == vulndb.KindVulnerability {
		return "vulnerability"
	}
	return printable(f.Kind)
}

// inFile tells a finding in a file (a known-bad file, a secret) from one
// in a package: it has a path and no package.
func inFile(f vulndb.Finding) bool { return f.Path != "" && f.Package == "" }

// fileOf names where a file finding is: "/app/.env:3", "config:Env".
func fileOf(f vulndb.Finding) string {
	s := printable(f.Path)
	if f.Line > 0 {
		s += ":" + strconv.Itoa(f.Line)
	}
	return s
}

// anyKind tells whether some finding is not a vulnerability, which is when
// the table shows a KIND column.
func anyKind(fs []vulndb.Finding) bool {
	return slices.ContainsFunc(fs, func(f vulndb.Finding) bool { return f.Kind != vulndb.KindVulnerability })
}

// otherKinds counts the findings that are not vulnerabilities for the
// table's summary line: ", 1 malware finding, 2 secrets" ("" if none).
func otherKinds(fs []vulndb.Finding) string {
	counts := map[string]int{}
	for _, f := range fs {
		if f.Kind != vulndb.KindVulnerability {
			counts[f.Kind]++
		}
	}
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, k)
	}
	// Malware first, then secrets, then any other kind by name.
	rank := func(k string) int {
		switch k {
		case vulndb.KindMalware:
			return 0
		case vulndb.KindSecret:
			return 1
		}
		return 2
	}
	slices.SortFunc(kinds, func(a, b string) int {
		if d := rank(a) - rank(b); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	for _, k := range kinds {
		n := counts[k]
		switch k {
		case vulndb.KindMalware:
			fmt.Fprintf(&b, ", %d malware %s", n, plural(n, "finding", "findings"))
		case vulndb.KindSecret:
			fmt.Fprintf(&b, ", %d %s", n, plural(n, "secret", "secrets"))
		default:
			fmt.Fprintf(&b, ", %d %s %s", n, printable(k), plural(n, "finding", "findings"))
		}
	}
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// shortDigest is a layer digest as the table shows it: 12 hex digits.
func shortDigest(d string) string {
	short := strings.TrimPrefix(d, "sha256:")
	if len(short) > 12 {
		short = short[:12]
	}
	return short
}

// osvID tells whether a finding's id is an OSV record's, which osv.dev
// shows: every vulnerability, and malicious packages (MAL-…); not a
// malware signature name or a secret kind.
func osvID(f vulndb.Finding) bool {
	return f.Kind == vulndb.KindVulnerability || (f.Kind == vulndb.KindMalware && !inFile(f))
}

// sarifMessage says what one finding is, by kind. A secret is named by
// its kind and place, never its value (findings do not hold it); its
// fingerprint is a hash and is left out as noise.
func sarifMessage(f vulndb.Finding) string {
	switch {
	case f.Kind == vulndb.KindMalware && inFile(f):
		return fmt.Sprintf("%s is known malware (%s)", fileOf(f), f.ID)
	case f.Kind == vulndb.KindMalware:
		return fmt.Sprintf("%s package %s %s is malicious (%s, %s)", f.Ecosystem, f.Package, f.InstalledVersion, f.ID, f.Severity)
	case f.Kind == vulndb.KindSecret:
		return fmt.Sprintf("%s found in %s", f.ID, fileOf(f))
	case inFile(f):
		return fmt.Sprintf("%s (%s) in %s", f.ID, kindName(f), fileOf(f))
	}
	return message(f)
}

// printable drops control characters from names that come from image
// contents (paths), which a terminal would act on.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsGraphic(r) {
			return r
		}
		return -1
	}, s)
}
