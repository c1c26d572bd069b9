package vulndb

import (
	"fmt"
	"testing"
)

// versionOrder is one row of the per-ecosystem tables: a is below, equal
// to or above b (want -1, 0, +1) in eco's own order.
type versionOrder struct {
	eco  string
	typ  string // range type the rows are matched through
	a, b string
	want int
}

func versionTables() []versionOrder {
	return []versionOrder{
		// dpkg: epochs win over everything, "~" sorts before the empty string,
		// revisions compare like versions.
		{"Debian:12", "ECOSYSTEM", "1:1.0-1", "2.0-1", +1},
		{"Debian:12", "ECOSYSTEM", "0:1.2-1", "1.2-1", 0},
		{"Debian:12", "ECOSYSTEM", "1.0~rc1-1", "1.0-1", -1},
		{"Debian:12", "ECOSYSTEM", "1.0~~a-1", "1.0~a-1", -1},
		{"Debian:12", "ECOSYSTEM", "2.36-9+deb12u3", "2.36-9+deb12u4", -1},
		{"Debian:12", "ECOSYSTEM", "2.36-9", "2.36-9+deb12u1", -1},
		{"Debian:12", "ECOSYSTEM", "1.2.10-1", "1.2.9-1", +1},
		{"Debian:12", "ECOSYSTEM", "3.0.11-1~deb12u2", "3.0.11-1", -1},
		{"Ubuntu:22.04", "ECOSYSTEM", "1.1.1f-1ubuntu2.19", "1.1.1f-1ubuntu2.20", -1},
		// apk: -rN is numeric, _p (patch) sorts after the release, _rc and
		// _alpha before it, a letter after the digits.
		{"Alpine:v3.16", "ECOSYSTEM", "1.35.0-r17", "1.35.0-r18", -1},
		{"Alpine:v3.16", "ECOSYSTEM", "1.35.0-r9", "1.35.0-r10", -1},
		{"Alpine:v3.16", "ECOSYSTEM", "9.0_p1-r0", "9.0-r5", +1},
		{"Alpine:v3.16", "ECOSYSTEM", "1.2.3_rc1-r0", "1.2.3-r0", -1},
		{"Alpine:v3.16", "ECOSYSTEM", "1.2.3_alpha-r0", "1.2.3_rc1-r0", -1},
		{"Alpine:v3.16", "ECOSYSTEM", "1.1.1q-r0", "1.1.1t-r0", -1},
		{"Alpine:v3.16", "ECOSYSTEM", "1.1.1t-r0", "1.1.1-r0", +1},
		{"Alpine:v3.16", "ECOSYSTEM", "2.0-r0", "2.0-r0", 0},
		// rpm: epoch, numeric segments, "~" pre-releases, release suffixes.
		{"AlmaLinux:9", "ECOSYSTEM", "1:1.0-1.el9", "2.0-1.el9", +1},
		{"AlmaLinux:9", "ECOSYSTEM", "2.34-60.el9", "2.34-100.el9", -1},
		{"Rocky Linux:9", "ECOSYSTEM", "1.0-1.el9", "1.0-1.el9_1", -1},
		{"Rocky Linux:9", "ECOSYSTEM", "1.0~rc1-1.el9", "1.0-1.el9", -1},
		{"Rocky Linux:9", "ECOSYSTEM", "3.0.7-24.el9", "3.0.7-24.el9", 0},
		// Go: semver with or without "v", pseudo-versions between releases,
		// toolchain pre-releases.
		{"Go", "SEMVER", "v1.2.3", "1.2.4", -1},
		{"Go", "SEMVER", "v1.2.3", "1.2.3", 0},
		{"Go", "SEMVER", "0.0.0-20210101000000-abcdef123456", "0.0.0-20220101000000-abcdef123456", -1},
		{"Go", "SEMVER", "1.2.4-0.20210101000000-abcdef123456", "1.2.4", -1},
		{"Go", "SEMVER", "1.2.4-0.20210101000000-abcdef123456", "1.2.3", +1},
		{"Go", "SEMVER", "1.21.0-rc.2", "1.21.0", -1},
		{"Go", "SEMVER", "1.21.10", "1.21.9", +1},
		// npm: pre-releases order by their dot-separated identifiers.
		{"npm", "ECOSYSTEM", "1.0.0-alpha", "1.0.0-alpha.1", -1},
		{"npm", "ECOSYSTEM", "1.0.0-alpha.2", "1.0.0-alpha.10", -1},
		{"npm", "ECOSYSTEM", "1.0.0-beta", "1.0.0-rc.1", -1},
		{"npm", "ECOSYSTEM", "1.0.0-rc.1", "1.0.0", -1},
		{"npm", "ECOSYSTEM", "4.17.21", "4.17.3", +1},
		{"crates.io", "ECOSYSTEM", "0.10.0", "0.9.9", +1},
		// PEP 440: dev < a < b < rc < release < post; epochs; local versions.
		{"PyPI", "ECOSYSTEM", "1.0.dev1", "1.0a1", -1},
		{"PyPI", "ECOSYSTEM", "1.0a1", "1.0b2", -1},
		{"PyPI", "ECOSYSTEM", "1.0b2", "1.0rc1", -1},
		{"PyPI", "ECOSYSTEM", "1.0rc1", "1.0", -1},
		{"PyPI", "ECOSYSTEM", "1.0", "1.0.post1", -1},
		{"PyPI", "ECOSYSTEM", "1!0.5", "2.0", +1},
		{"PyPI", "ECOSYSTEM", "1.0", "1.0.0", 0},
		{"PyPI", "ECOSYSTEM", "1.0+local.1", "1.0", +1},
		{"PyPI", "ECOSYSTEM", "2.10.0", "2.9.0", +1},
		// Maven: qualifiers alpha < beta < milestone < rc < snapshot < release < sp.
		{"Maven", "ECOSYSTEM", "1.0-alpha-1", "1.0", -1},
		{"Maven", "ECOSYSTEM", "1.0-beta-1", "1.0-rc1", -1},
		{"Maven", "ECOSYSTEM", "1.0-SNAPSHOT", "1.0", -1},
		{"Maven", "ECOSYSTEM", "1.0", "1.0-sp1", -1},
		{"Maven", "ECOSYSTEM", "2.12.7.1", "2.12.7", +1},
		{"Maven", "ECOSYSTEM", "1.0", "1.0.0", 0},
		// RubyGems: a letter makes a pre-release.
		{"RubyGems", "ECOSYSTEM", "1.0.0.pre", "1.0.0", -1},
		{"RubyGems", "ECOSYSTEM", "1.0.0.rc1", "1.0.0", -1},
		{"RubyGems", "ECOSYSTEM", "1.10", "1.9", +1},
		{"RubyGems", "ECOSYSTEM", "1.0.a", "1.0.b", -1},
		// NuGet: SemVer 2 with a fourth numeric part, pre-releases compared
		// case-insensitively, build metadata ignored.
		{"NuGet", "ECOSYSTEM", "1.0.0-beta", "1.0.0", -1},
		{"NuGet", "ECOSYSTEM", "4.3.0.1", "4.3.0", +1},
		{"NuGet", "ECOSYSTEM", "4.3.0", "4.3.0.0", 0},
		{"NuGet", "ECOSYSTEM", "4.3.0.1", "4.3.1", -1},
		{"NuGet", "ECOSYSTEM", "1.0.0-RC.1", "1.0.0-rc.1", 0},
		{"NuGet", "ECOSYSTEM", "1.0.0-alpha.2", "1.0.0-alpha.10", -1},
		{"NuGet", "ECOSYSTEM", "1.0.0-beta", "1.0.0-Beta.1", -1},
		{"NuGet", "ECOSYSTEM", "1.0.0+build.5", "1.0.0", 0},
		{"NuGet", "ECOSYSTEM", "13.0.1", "13.0.1-beta1", +1},
		{"NuGet", "ECOSYSTEM", "2.1.10", "2.1.7", +1},
		// Composer: a "v" prefix is no part of the version, releases are
		// four numeric parts (1.2 = 1.2.0 = 1.2.0.0), dev < alpha < beta <
		// RC < stable < patch.
		{"Packagist", "ECOSYSTEM", "1.0.0-beta1", "1.0.0", -1},
		{"Packagist", "ECOSYSTEM", "v1.2.3", "1.2.3", 0},
		{"Packagist", "ECOSYSTEM", "V1.2.3", "1.2.4", -1},
		{"Packagist", "ECOSYSTEM", "v6.5.7", "6.5.8", -1},
		{"Packagist", "ECOSYSTEM", "1.2", "1.2.0", 0},
		{"Packagist", "ECOSYSTEM", "2.0.0.0", "v2.0.0", 0},
		{"Packagist", "ECOSYSTEM", "2.0.0-beta1", "2.0", -1},
		{"Packagist", "ECOSYSTEM", "v2.0-RC1", "2.0.0", -1},
		{"Packagist", "ECOSYSTEM", "1.0.0-dev", "1.0.0-alpha", -1},
		{"Packagist", "ECOSYSTEM", "1.0.0-alpha2", "1.0.0-beta", -1},
		{"Packagist", "ECOSYSTEM", "1.0.0-beta2", "1.0.0-RC1", -1},
		{"Packagist", "ECOSYSTEM", "1.0.0-rc1", "1.0.0-RC1", 0},
		{"Packagist", "ECOSYSTEM", "1.0.0-beta.2", "1.0.0-beta10", -1},
		{"Packagist", "ECOSYSTEM", "1.0.0", "1.0.0-p1", -1},
		{"Packagist", "ECOSYSTEM", "1.0.0-patch1", "1.0.1", -1},
		{"Packagist", "ECOSYSTEM", "1.10.0", "1.9.0", +1},
		// crates.io: SemVer 2.
		{"crates.io", "ECOSYSTEM", "1.0.0-alpha.1", "1.0.0", -1},
		{"crates.io", "ECOSYSTEM", "1.0.0-alpha.beta", "1.0.0-beta", -1},
		{"crates.io", "ECOSYSTEM", "1.0.0+meta", "1.0.0", 0},
		{"crates.io", "ECOSYSTEM", "0.14.10", "0.14.9", +1},
		{"crates.io", "ECOSYSTEM", "0.0.1", "0.0.10", -1},
	}
}

// TestVersionOrder checks each row twice: directly, both ways round, and
// through an import and a Match of records whose range ends at b, once with
// "fixed" (a is affected iff a < b) and once with "last_affected" (iff a ≤ b).
func TestVersionOrder(t *testing.T) {
	db := openTestDB(t)
	rows := versionTables()
	var records []any
	var queries []Query
	for i, row := range rows {
		name := fmt.Sprintf("pkg%d", i)
		records = append(records,
			rec(fmt.Sprintf("FIXED-%03d", i), row.eco, name, row.typ, ev("introduced", "0"), ev("fixed", row.b)),
			rec(fmt.Sprintf("LAST-%03d", i), row.eco, name, row.typ, ev("introduced", "0"), ev("last_affected", row.b)))
		queries = append(queries, Query{Ecosystem: row.eco, Name: name, Version: row.a})
	}
	st := importValues(t, db, records...)
	if st.Skipped != 0 {
		t.Fatalf("skipped %d records: %v", st.Skipped, st.Problems)
	}
	got := map[int][]string{}
	for _, f := range match(t, db, queries...) {
		got[f.Query] = append(got[f.Query], f.ID[:5])
	}
	for i, row := range rows {
		t.Run(fmt.Sprintf("%s/%s_vs_%s", row.eco, row.a, row.b), func(t *testing.T) {
			semver := row.typ == "SEMVER"
			a := queryVersion(normalizeEcosystem(row.eco), "", row.a)
			if c, err := compareStrings(a, row.b, row.eco, semver); err != nil || c != row.want {
				t.Errorf("compare(%q, %q) = %d, %v; want %d", a, row.b, c, err, row.want)
			}
			if c, err := compareStrings(row.b, a, row.eco, semver); err != nil || c != -row.want {
				t.Errorf("compare(%q, %q) = %d, %v; want %d", row.b, a, c, err, -row.want)
			}
			var want []string
			if row.want < 0 {
				want = append(want, "FIXED")
			}
			if row.want <= 0 {
				want = append(want, "LAST-")
			}
			if fmt.Sprint(got[i]) != fmt.Sprint(want) {
				t.Errorf("Match(%s %s) = %v, want %v", row.eco, row.a, got[i], want)
			}
		})
	}
}

// TestRangeEvents covers the OSV range shapes: several spans in one range,
// several ranges, last_affected, limit, explicit versions, GIT ignored.
func TestRangeEvents(t *testing.T) {
	db := openTestDB(t)
	multi := rec("MULTI", "npm", "multi", "SEMVER",
		// Deliberately out of order: import sorts events.
		ev("fixed", "2.0.0"), ev("introduced", "3.0.0"), ev("introduced", "1.0.0"), ev("fixed", "3.1.0"))
	limited := rec("LIMIT", "PyPI", "limited", "ECOSYSTEM", ev("introduced", "1.0"), ev("limit", "2.0"))
	listed := map[string]any{
		"id": "LISTED",
		"affected": []any{map[string]any{
			"package":  map[string]string{"ecosystem": "PyPI", "name": "listed"},
			"ranges":   []any{map[string]any{"type": "GIT", "repo": "https://example.org/x", "events": []any{ev("introduced", "abc"), ev("fixed", "def")}}},
			"versions": []string{"0.9", "1.0.1"},
		}},
	}
	gitOnly := rec("GITONLY", "PyPI", "gitonly", "GIT", ev("introduced", "abc"))
	if st := importValues(t, db, multi, limited, listed, gitOnly); st.Records != 4 || st.Skipped != 0 {
		t.Fatalf("Import = %+v, want 4 records", st)
	}
	if fs := match(t, db, Query{Ecosystem: "PyPI", Name: "gitonly", Version: "1.0"}); len(fs) != 0 {
		t.Errorf("a GIT-only record matched: %v", ids(fs))
	}
	cases := []struct {
		q     Query
		want  string
		fixed string
	}{
		{Query{Ecosystem: "npm", Name: "multi", Version: "0.9.0"}, "", ""},
		{Query{Ecosystem: "npm", Name: "multi", Version: "1.0.0"}, "MULTI", "2.0.0"},
		{Query{Ecosystem: "npm", Name: "multi", Version: "2.5.0"}, "", ""},
		{Query{Ecosystem: "npm", Name: "multi", Version: "3.0.5"}, "MULTI", "3.1.0"},
		{Query{Ecosystem: "npm", Name: "multi", Version: "3.1.0"}, "", ""},
		{Query{Ecosystem: "PyPI", Name: "limited", Version: "1.5"}, "LIMIT", ""},
		{Query{Ecosystem: "PyPI", Name: "limited", Version: "2.0"}, "", ""},
		{Query{Ecosystem: "PyPI", Name: "listed", Version: "1.0.1"}, "LISTED", ""},
		{Query{Ecosystem: "PyPI", Name: "listed", Version: "1.0.2"}, "", ""},
	}
	for _, c := range cases {
		fs := match(t, db, c.q)
		var got, fixed string
		if len(fs) > 0 {
			got = fs[0].ID
			if len(fs[0].FixedVersions) > 0 {
				fixed = fs[0].FixedVersions[0]
			}
		}
		if len(fs) > 1 || got != c.want || fixed != c.fixed {
			t.Errorf("%s %s: got %v fixed %q, want %q fixed %q", c.q.Name, c.q.Version, ids(fs), fixed, c.want, c.fixed)
		}
	}
}
