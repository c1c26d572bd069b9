package vulndb

import (
	"fmt"
	"testing"
)

// goRecords are modelled on golang.org/x/vulndb's data/osv (GO-2026-6809 for
// the standard library, GO-2020-0004 for pseudo-version bounds): SEMVER
// ranges, versions without "v", "introduced 1.27.0-0" to open a release line
// at its first pre-release.
func goRecords() []any {
	goRec := func(id, pkg string, events ...map[string]string) map[string]any {
		r := rec(id, "Go", pkg, "SEMVER", events...)
		r["schema_version"] = "1.3.1"
		r["summary"] = "Test vulnerability in " + pkg
		r["database_specific"] = map[string]string{"url": "https://pkg.go.dev/vuln/" + id, "review_status": "REVIEWED"}
		return r
	}
	return []any{
		goRec("GO-TEST-0001", "stdlib",
			ev("introduced", "0"), ev("fixed", "1.26.10"),
			ev("introduced", "1.27.0-0"), ev("fixed", "1.27.3")),
		goRec("GO-TEST-0002", "github.com/nanobox-io/golang-nanoauth",
			ev("introduced", "0.0.0-20160722212129-ac0cc4484ad4"),
			ev("fixed", "0.0.0-20200131131040-063a3fb69896")),
		goRec("GO-TEST-0003", "golang.org/x/net",
			ev("introduced", "0"), ev("fixed", "0.17.0")),
	}
}

func TestMatchGo(t *testing.T) {
	db := openTestDB(t)
	importValues(t, db, goRecords()...)
	cases := []struct {
		name, version string
		want          string // "" or "ID fixed"
	}{
		// The toolchain, as build info ("go1.26.9") or plain.
		{"stdlib", "go1.26.9", "GO-TEST-0001 1.26.10"},
		{"stdlib", "1.26.9", "GO-TEST-0001 1.26.10"},
		{"stdlib", "go1.25", "GO-TEST-0001 1.26.10"},
		{"stdlib", "go1.26.10", ""},
		{"stdlib", "go1.27rc1", "GO-TEST-0001 1.27.3"},
		{"stdlib", "go1.27.2 X:boringcrypto", "GO-TEST-0001 1.27.3"},
		{"stdlib", "go1.27.3", ""},
		// Pseudo-versions on both sides.
		{"github.com/nanobox-io/golang-nanoauth", "v0.0.0-20190101000000-abcdef012345", "GO-TEST-0002 0.0.0-20200131131040-063a3fb69896"},
		{"github.com/nanobox-io/golang-nanoauth", "v0.0.0-20160101000000-abcdef012345", ""},
		{"github.com/nanobox-io/golang-nanoauth", "v0.0.0-20200131131040-063a3fb69896", ""},
		// Module versions with "v", and a pseudo-version before a release.
		{"golang.org/x/net", "v0.16.0", "GO-TEST-0003 0.17.0"},
		{"golang.org/x/net", "v0.17.0-0.20231001000000-abcdef123456", "GO-TEST-0003 0.17.0"},
		{"golang.org/x/net", "v0.17.0", ""},
		{"golang.org/x/net", "v0.17.1-0.20231101000000-abcdef123456", ""},
		// Case matters in module paths.
		{"golang.org/x/Net", "v0.16.0", ""},
	}
	for _, c := range cases {
		fs := match(t, db, Query{Ecosystem: "Go", Name: c.name, Version: c.version})
		got := ""
		if len(fs) == 1 {
			got = fmt.Sprintf("%s %s", fs[0].ID, fs[0].FixedVersions[0])
			if fs[0].Severity != SeverityUnknown || fs[0].InstalledVersion != c.version {
				t.Errorf("%s %s: %+v", c.name, c.version, fs[0])
			}
		} else if len(fs) > 1 {
			got = fmt.Sprint(ids(fs))
		}
		if got != c.want {
			t.Errorf("%s %s: got %q, want %q", c.name, c.version, got, c.want)
		}
	}
}
