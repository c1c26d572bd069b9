package vulndb

import (
	"errors"
	"fmt"
	"slices"
	"unicode"

	"github.com/google/osv-scalibr/semantic"
)

// Event kinds of an OSV range (https://ossf.github.io/osv-schema/#affectedrangesevents-fields).
const (
	evIntroduced   = "i"
	evFixed        = "f"
	evLastAffected = "l"
	evLimit        = "m"
)

// event is one OSV range event, kept in the index in version order.
type event struct {
	Kind    string `json:"k"`
	Version string `json:"v"`
}

// vrange is one ECOSYSTEM or SEMVER range with its events sorted, so that
// matching is a single walk.
type vrange struct {
	// Semver: a SEMVER range orders versions by semver whatever the
	// ecosystem; an ECOSYSTEM range by the ecosystem's own rules.
	Semver bool    `json:"sv,omitempty"`
	Events []event `json:"e"`
	// bounds are the parsed event versions (nil for unbounded events),
	// kept while a record is imported so that dropping the listed
	// versions a range already covers does not reparse every bound.
	bounds []semantic.Version
}

// parseVersion parses v the way a range of this kind orders it. eco is an
// OSV ecosystem, with or without release; semantic.Parse drops the release
// itself ("Debian:12" → Debian, "Rocky Linux:9" → Red Hat rules).
func parseVersion(v, eco string, semver bool) (ver semantic.Version, err error) {
	// The comparison code is not ours and sees hostile input (any string in
	// an image or an advisory); a panic there must cost one match, not the
	// process.
	defer func() {
		if r := recover(); r != nil {
			ver, err = nil, fmt.Errorf("parse version %q (%s): %v", v, eco, r)
		}
	}()
	// Some parsers build strings quadratically; real versions are short.
	if len(v) > maxVersionLen {
		return nil, fmt.Errorf("version is %d bytes long, more than %d", len(v), maxVersionLen)
	}
	if semver {
		return semantic.ParseSemverVersion(v), nil
	}
	if baseEcosystem(eco) == "Packagist" {
		return parseComposerVersion(v), nil
	}
	return semantic.Parse(v, eco)
}

// maxVersionLen bounds the versions we parse. The longest real ones (Debian
// revisions with backport suffixes, Go pseudo-versions) are under 100 bytes;
// a hostile 1 MB "version" in an image would otherwise cost minutes.
const maxVersionLen = 256

// compareVersion compares a parsed version with a version string of the same
// ecosystem: -1, 0 or +1 as iv is below, equal to or above s.
func compareVersion(iv semantic.Version, s string) (c int, err error) {
	defer func() {
		if r := recover(); r != nil {
			c, err = 0, fmt.Errorf("compare version with %q: %v", s, r)
		}
	}()
	return iv.CompareStr(s)
}

// compareParsed is compareVersion for a bound parsed at import.
func compareParsed(iv, bound semantic.Version) (c int, err error) {
	defer func() {
		if r := recover(); r != nil {
			c, err = 0, fmt.Errorf("compare versions: %v", r)
		}
	}()
	return iv.Compare(bound)
}

// compareMemo keeps the comparisons of one installed version with the
// range bounds met while matching it. A package's advisories repeat the
// same bounds (one Debian or Alpine update fixes dozens of CVEs: the same
// "fixed" version in each), and a comparison is the costly part of
// matching them (osv-scalibr builds strings and big.Ints for each). The
// installed version is the same for every comparison kept until reset,
// and a bound string parses to one version for a kind of range (semver
// or ecosystem order, the ecosystem being the query's), so the result
// is keyed on the kind and the bound's string.
type compareMemo struct {
	byKind [2]map[string]compareResult
}

type compareResult struct {
	c   int
	err error
}

// maxCompareMemo bounds the comparisons kept for each kind; past it,
// bounds are compared each time.
const maxCompareMemo = 1 << 14

// reset forgets the comparisons, for another installed version.
func (m *compareMemo) reset() {
	for i := range m.byKind {
		clear(m.byKind[i])
	}
}

// compare is compareParsed(iv, bound), through the memo; s is the bound
// as a string.
func (m *compareMemo) compare(iv, bound semantic.Version, s string, semver bool) (int, error) {
	if m == nil {
		return compareParsed(iv, bound)
	}
	k := 0
	if semver {
		k = 1
	}
	if r, ok := m.byKind[k][s]; ok {
		return r.c, r.err
	}
	c, err := compareParsed(iv, bound)
	if m.byKind[k] == nil {
		m.byKind[k] = map[string]compareResult{}
	}
	if len(m.byKind[k]) < maxCompareMemo {
		m.byKind[k][s] = compareResult{c, err}
	}
	return c, err
}

// compareStrings orders two version strings of one ecosystem; the fuzz
// tests hold it to a consistent order.
func compareStrings(a, b, eco string, semver bool) (int, error) {
	va, err := parseVersion(a, eco, semver)
	if err != nil {
		return 0, err
	}
	return compareVersion(va, b)
}

// newRange checks an OSV range and returns it with its events sorted.
// Errors describe what is wrong with the range, for the import report.
func newRange(typ string, events []osvEvent, eco string) (vrange, error) {
	r := vrange{Semver: typ == "SEMVER"}
	hasIntroduced := false
	for i, e := range events {
		set := 0
		for _, f := range []struct{ kind, v string }{
			{evIntroduced, e.Introduced}, {evFixed, e.Fixed},
			{evLastAffected, e.LastAffected}, {evLimit, e.Limit},
		} {
			if f.v != "" {
				set++
				r.Events = append(r.Events, event{Kind: f.kind, Version: f.v})
			}
		}
		if set != 1 {
			return vrange{}, fmt.Errorf("event %d has %d of introduced/fixed/last_affected/limit, want exactly 1", i, set)
		}
		hasIntroduced = hasIntroduced || e.Introduced != ""
	}
	if len(r.Events) == 0 {
		return vrange{}, errors.New("range has no events")
	}
	if !hasIntroduced {
		return vrange{}, errors.New("range has no introduced event")
	}
	// Parse every bound once: a bound we cannot parse would make the range
	// match wrongly, so the record is refused instead.
	parsed := make([]semantic.Version, len(r.Events))
	for i, e := range r.Events {
		if isUnbounded(e) {
			continue
		}
		if err := checkVersionSyntax(e.Version, eco); err != nil {
			return vrange{}, fmt.Errorf("%s version %q: %w", kindName(e.Kind), e.Version, err)
		}
		v, err := parseVersion(e.Version, eco, r.Semver)
		if errors.Is(err, semantic.ErrUnsupportedEcosystem) {
			// We do not know this ecosystem's order: keep the range as
			// it is. It can only match as "every version" (see
			// contains); the record's versions list still matches.
			return r, nil
		}
		if err != nil {
			return vrange{}, fmt.Errorf("%s version %q: %w", kindName(e.Kind), e.Version, err)
		}
		parsed[i] = v
	}
	idx := make([]int, len(r.Events))
	for i := range idx {
		idx[i] = i
	}
	var sortErr error
	slices.SortStableFunc(idx, func(a, b int) int {
		ea, eb := r.Events[a], r.Events[b]
		switch {
		case isUnbounded(ea) && isUnbounded(eb):
			return kindOrder(ea.Kind) - kindOrder(eb.Kind)
		case ea.Kind == evIntroduced && ea.Version == "0", eb.Kind == evLimit && eb.Version == "*":
			return -1
		case eb.Kind == evIntroduced && eb.Version == "0", ea.Kind == evLimit && ea.Version == "*":
			return 1
		}
		c, err := compareVersion(parsed[a], eb.Version)
		if err != nil && sortErr == nil {
			sortErr = err
		}
		if c != 0 {
			return c
		}
		// At one version, open before closing: "introduced X, fixed X"
		// is an empty span, not an open one.
		return kindOrder(ea.Kind) - kindOrder(eb.Kind)
	})
	if sortErr != nil {
		return vrange{}, fmt.Errorf("order events: %w", sortErr)
	}
	sorted := make([]event, len(idx))
	r.bounds = make([]semantic.Version, len(idx))
	for i, j := range idx {
		sorted[i], r.bounds[i] = r.Events[j], parsed[j]
	}
	r.Events = sorted
	return r, nil
}

// checkVersionSyntax refuses what no ecosystem calls a version. The
// comparison code is lenient (it orders any string somehow), so a bound
// like "<= 2.0" or "see notes" would otherwise give a range that silently
// matches the wrong versions.
func checkVersionSyntax(v, eco string) error {
	for _, r := range v {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return errors.New("contains white space or control characters")
		}
	}
	switch baseEcosystem(eco) {
	case "Alpine", "Debian", "Ubuntu":
		// dpkg and apk versions (and a dpkg epoch) start with a digit.
		if v == "" || v[0] < '0' || v[0] > '9' {
			return errors.New("does not start with a digit")
		}
	}
	return nil
}

// isUnbounded tells the bounds that need no parsing: introduced "0" (the
// first version) and limit "*" (no limit).
func isUnbounded(e event) bool {
	return (e.Kind == evIntroduced && e.Version == "0") || (e.Kind == evLimit && e.Version == "*")
}

func kindOrder(k string) int {
	switch k {
	case evIntroduced:
		return 0
	case evLastAffected:
		return 1
	case evFixed:
		return 2
	}
	return 3
}

func kindName(k string) string {
	switch k {
	case evIntroduced:
		return "introduced"
	case evFixed:
		return "fixed"
	case evLastAffected:
		return "last_affected"
	}
	return "limit"
}

// everyVersion tells a range that affects every version (Debian's open
// issues: only "introduced 0"); it matches even a version we cannot parse.
func (r vrange) everyVersion() bool {
	for _, e := range r.Events {
		if !isUnbounded(e) {
			return false
		}
	}
	return true
}

// contains reports whether the installed version is inside the range, and
// if so the version that fixes it ("" when the range ends with
// last_affected or is open). iv is the installed version parsed for this
// range's kind, nil if it could not be parsed. It follows the evaluation in
// https://ossf.github.io/osv-schema/#evaluation on events sorted at import.
func (r vrange) contains(iv semantic.Version) (bool, string) {
	return r.containsWith(iv, nil)
}

// containsWith is contains with the comparisons of parsed bounds looked
// up in memo first (nil: none kept).
func (r vrange) containsWith(iv semantic.Version, memo *compareMemo) (bool, string) {
	if r.everyVersion() {
		return true, ""
	}
	if iv == nil {
		return false, ""
	}
	affected, opened := false, -1
	hasLimit, belowLimit := false, false
	for i, e := range r.Events {
		if isUnbounded(e) {
			if e.Kind == evIntroduced {
				affected, opened = true, i
			} else {
				hasLimit, belowLimit = true, true
			}
			continue
		}
		var c int
		var err error
		if r.bounds != nil {
			c, err = memo.compare(iv, r.bounds[i], e.Version, r.Semver)
		} else {
			c, err = compareVersion(iv, e.Version)
		}
		if err != nil {
			return false, ""
		}
		switch e.Kind {
		case evIntroduced:
			if c >= 0 {
				affected, opened = true, i
			}
		case evFixed:
			if c >= 0 {
				affected = false
			}
		case evLastAffected:
			if c > 0 {
				affected = false
			}
		case evLimit:
			// Limits bound the whole range: a version must be below one
			// of them (the spec's BeforeLimits).
			hasLimit = true
			belowLimit = belowLimit || c < 0
		}
	}
	if !affected || (hasLimit && !belowLimit) {
		return false, ""
	}
	for _, e := range r.Events[opened+1:] {
		switch e.Kind {
		case evFixed:
			return true, e.Version
		case evLastAffected, evLimit:
			return true, ""
		}
	}
	return true, ""
}
