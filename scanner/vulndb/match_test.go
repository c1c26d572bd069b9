package vulndb

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestMatchTestdata matches against the real records of the shared tree.
func TestMatchTestdata(t *testing.T) {
	db := openTestDB(t)
	if _, err := db.Import(context.Background(), []string{osvTestdata(t)}, nil); err != nil {
		t.Fatal(err)
	}

	t.Run("alpine busybox", func(t *testing.T) {
		// The Alpine 3.16.9 image's busybox and ssl_client (origin busybox).
		fs := match(t, db,
			Query{Ecosystem: "Alpine:v3.16", Name: "busybox", Version: "1.35.0-r17", SourceName: "busybox"},
			Query{Ecosystem: "Alpine:v3.16", Name: "ssl_client", Version: "1.35.0-r17", SourceName: "busybox"},
			Query{Ecosystem: "Alpine:v3.16", Name: "busybox", Version: "1.35.0-r18"},
			Query{Ecosystem: "Alpine:v3.16", Name: "ssl_client", Version: "1.35.0-r18", SourceName: "busybox"},
		)
		want := []Finding{
			{ID: "ALPINE-CVE-2023-42366", Upstream: []string{"CVE-2023-42366"}, Ecosystem: "Alpine:v3.16", Package: "busybox", InstalledVersion: "1.35.0-r17", FixedVersions: []string{"1.35.0-r18"}, Severity: "UNKNOWN", Query: 0},
			{ID: "ALPINE-CVE-2023-42366", Upstream: []string{"CVE-2023-42366"}, Ecosystem: "Alpine:v3.16", Package: "ssl_client", AffectedPackage: "busybox", InstalledVersion: "1.35.0-r17", FixedVersions: []string{"1.35.0-r18"}, Severity: "UNKNOWN", Query: 1},
		}
		for i := range fs {
			fs[i].Summary = "" // prose from the converter, not under test
		}
		if fmt.Sprintf("%+v", fs) != fmt.Sprintf("%+v", want) {
			t.Errorf("got  %+v\nwant %+v", fs, want)
		}
	})

	t.Run("alpine release spellings", func(t *testing.T) {
		for _, eco := range []string{"Alpine:v3.16", "Alpine:3.16", "alpine:v3.16.9"} {
			fs := match(t, db, Query{Ecosystem: eco, Name: "busybox", Version: "1.35.0-r17"})
			if !slices.Equal(ids(fs), []string{"ALPINE-CVE-2023-42366"}) {
				t.Errorf("%s: %v", eco, ids(fs))
			}
		}
		// Another release is another ecosystem: v3.10's busybox records
		// must not answer for v3.17.
		if fs := match(t, db, Query{Ecosystem: "Alpine:v3.17", Name: "busybox", Version: "1.0-r0"}); len(fs) != 0 {
			t.Errorf("Alpine:v3.17 matched %v", ids(fs))
		}
	})

	t.Run("debian open issue matches every version", func(t *testing.T) {
		for _, v := range []string{"2.36-9+deb12u1", "0.1-1", "99:1.0"} {
			fs := match(t, db, Query{Ecosystem: "Debian:12", Name: "libc6", Version: v, SourceName: "glibc"})
			if !slices.Contains(ids(fs), "DEBIAN-CVE-2010-4756") {
				t.Errorf("libc6 %s (glibc): %v lacks DEBIAN-CVE-2010-4756", v, ids(fs))
			}
		}
	})

	t.Run("debian fixed", func(t *testing.T) {
		fs := match(t, db,
			Query{Ecosystem: "Debian:12", Name: "systemd", Version: "241-7"},
			Query{Ecosystem: "Debian:12", Name: "libsystemd0", Version: "252.12-1~deb12u1", SourceName: "systemd"})
		var old, cur []string
		for _, f := range fs {
			if f.Query == 0 {
				old = append(old, f.ID)
			} else {
				cur = append(cur, f.ID)
			}
		}
		if !slices.Contains(old, "DEBIAN-CVE-2019-3843") || slices.Contains(cur, "DEBIAN-CVE-2019-3843") {
			t.Errorf("systemd 241-7: %v; 252.12: %v", old, cur)
		}
	})

	t.Run("npm severities", func(t *testing.T) {
		fs := match(t, db, Query{Ecosystem: "npm", Name: "lodash", Version: "4.17.4"})
		got := map[string]string{}
		for _, f := range fs {
			got[f.ID] = fmt.Sprintf("%s %.1f %v", f.Severity, f.Score, f.FixedVersions)
		}
		want := map[string]string{
			"GHSA-29mw-wpgm-hmr9": "MEDIUM 5.3 [4.17.21]",   // CVSS 3.1 (database says MODERATE too)
			"GHSA-35jh-r3h4-6jhm": "HIGH 7.2 [4.17.21]",     // CVSS 3.1
			"GHSA-4xc9-xhrj-v574": "HIGH 0.0 [4.17.11]",     // no vector: database_specific HIGH
			"GHSA-fvqr-27wr-82fm": "LOW 0.0 [4.17.5]",       // no vector: database_specific LOW
			"GHSA-jf85-cpcp-j695": "CRITICAL 9.1 [4.17.12]", // CVSS 3.1
			"GHSA-p6mc-m468-83gw": "HIGH 7.4 [4.17.20]",     // CVSS 3.1
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("lodash 4.17.4:\n got %v\nwant %v", got, want)
		}
		for _, f := range fs {
			// The record's publication time, for the policy's grace window.
			if f.ID == "GHSA-29mw-wpgm-hmr9" && f.Published.Format(time.RFC3339) != "2022-01-06T20:30:46Z" {
				t.Errorf("%s published %v", f.ID, f.Published)
			}
		}
		if fs := match(t, db, Query{Ecosystem: "npm", Name: "lodash", Version: "4.17.21"}); len(fs) != 0 {
			t.Errorf("lodash 4.17.21: %v", ids(fs))
		}
		// minimist: two affected entries for one package (two version lines).
		fs = match(t, db,
			Query{Ecosystem: "npm", Name: "minimist", Version: "0.0.8"},
			Query{Ecosystem: "npm", Name: "minimist", Version: "1.2.5"})
		got = map[string]string{}
		for _, f := range fs {
			got[fmt.Sprintf("%d %s", f.Query, f.ID)] = fmt.Sprintf("%s %v", f.Severity, f.FixedVersions)
		}
		want = map[string]string{
			"0 GHSA-vh95-rmgr-6w4m": "MEDIUM [0.2.1]",
			"0 GHSA-xvch-5gv4-984h": "CRITICAL [0.2.4]",
			"1 GHSA-xvch-5gv4-984h": "CRITICAL [1.2.6]",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("minimist:\n got %v\nwant %v", got, want)
		}
	})

	t.Run("pypi names", func(t *testing.T) {
		for _, name := range []string{"PyYAML", "pyyaml", "PYYAML"} {
			fs := match(t, db, Query{Ecosystem: "PyPI", Name: name, Version: "5.3"})
			if !slices.Equal(ids(fs), []string{"PYSEC-2020-96", "PYSEC-2021-142"}) {
				t.Errorf("%s 5.3: %v", name, ids(fs))
			}
		}
		// Two spans in one range: the fix reported is the one of the
		// span holding the installed version.
		for v, fix := range map[string]string{"2.3.7": "2.3.8", "3.0.0": "3.0.1"} {
			fs := match(t, db, Query{Ecosystem: "PyPI", Name: "Werkzeug", Version: v})
			i := slices.IndexFunc(fs, func(f Finding) bool { return f.ID == "PYSEC-2023-221" })
			if i < 0 || !slices.Equal(fs[i].FixedVersions, []string{fix}) || fs[i].Severity != "HIGH" {
				t.Errorf("Werkzeug %s: %+v", v, fs)
			}
		}
	})

	t.Run("latency", func(t *testing.T) {
		qs := benchQueries()
		start := time.Now()
		fs := match(t, db, qs...)
		t.Logf("Match of %d queries: %v, %d findings", len(qs), time.Since(start), len(fs))
	})
}

// benchQueries is ~200 queries shaped like an image's inventory: Alpine
// and Debian packages with source names, and language packages.
func benchQueries() []Query {
	var qs []Query
	for i := range 80 {
		qs = append(qs, Query{Ecosystem: "Alpine:v3.16", Name: fmt.Sprintf("lib%d", i), Version: "1.0-r0", SourceName: fmt.Sprintf("pkg%d", i)})
	}
	for _, n := range []string{"busybox", "openssl", "zlib", "musl", "curl", "expat", "libxml2", "sqlite", "pcre2", "ncurses"} {
		qs = append(qs, Query{Ecosystem: "Alpine:v3.16", Name: n, Version: "1.0.0-r0", SourceName: n})
	}
	for i := range 80 {
		qs = append(qs, Query{Ecosystem: "Debian:12", Name: fmt.Sprintf("bin%d", i), Version: "1.0-1", SourceName: fmt.Sprintf("src%d", i)})
	}
	for _, n := range []string{"glibc", "systemd", "openssl", "curl", "tar", "perl", "coreutils", "shadow", "apt", "gnutls28"} {
		qs = append(qs, Query{Ecosystem: "Debian:12", Name: "lib" + n, Version: "1.0-1", SourceName: n})
	}
	for _, n := range []string{"requests", "urllib3", "jinja2", "werkzeug", "pyyaml", "idna", "certifi"} {
		qs = append(qs, Query{Ecosystem: "PyPI", Name: n, Version: "1.0"})
	}
	for _, n := range []string{"lodash", "minimist", "express"} {
		qs = append(qs, Query{Ecosystem: "npm", Name: n, Version: "1.0.0"})
	}
	return qs
}

// TestMatchSourceAndBinary: a record naming both the source and a binary
// package is reported once per query, from the source match.
func TestMatchSourceAndBinary(t *testing.T) {
	db := openTestDB(t)
	both := map[string]any{
		"id": "DEBIAN-CVE-2099-0001",
		"affected": []any{
			map[string]any{
				"package": map[string]string{"ecosystem": "Debian:12", "name": "openssl"},
				"ranges":  []any{map[string]any{"type": "ECOSYSTEM", "events": []any{ev("introduced", "0"), ev("fixed", "3.0.11-1~deb12u2")}}},
			},
			map[string]any{
				"package": map[string]string{"ecosystem": "Debian:12", "name": "libssl3"},
				"ranges":  []any{map[string]any{"type": "ECOSYSTEM", "events": []any{ev("introduced", "0"), ev("fixed", "3.0.11-1~deb12u3")}}},
			},
		},
	}
	binaryOnly := rec("DEBIAN-CVE-2099-0002", "Debian:12", "libssl3", "ECOSYSTEM", ev("introduced", "0"))
	importValues(t, db, both, binaryOnly)
	fs := match(t, db, Query{Ecosystem: "Debian:12", Name: "libssl3", Version: "3.0.11-1~deb12u1+b1", SourceName: "openssl", SourceVersion: "3.0.11-1~deb12u1"})
	if got := ids(fs); !slices.Equal(got, []string{"DEBIAN-CVE-2099-0001", "DEBIAN-CVE-2099-0002"}) {
		t.Fatalf("got %v", got)
	}
	if f := fs[0]; !slices.Equal(f.FixedVersions, []string{"3.0.11-1~deb12u2"}) || f.AffectedPackage != "openssl" || f.InstalledVersion != "3.0.11-1~deb12u1+b1" {
		t.Errorf("source match: %+v", f)
	}
	if f := fs[1]; f.AffectedPackage != "" || f.Package != "libssl3" {
		t.Errorf("binary match: %+v", f)
	}
}

// TestMatchPyPINames: PEP 503 names, from both sides.
func TestMatchPyPINames(t *testing.T) {
	db := openTestDB(t)
	importValues(t, db, rec("PYSEC-TEST-1", "PyPI", "zope.interface", "ECOSYSTEM", ev("introduced", "0"), ev("fixed", "5.0")))
	for _, name := range []string{"zope.interface", "Zope.Interface", "zope_interface", "zope-interface", "ZOPE__INTERFACE"} {
		if fs := match(t, db, Query{Ecosystem: "pypi", Name: name, Version: "4.7.2"}); !slices.Equal(ids(fs), []string{"PYSEC-TEST-1"}) {
			t.Errorf("%s: %v", name, ids(fs))
		}
	}
	if fs := match(t, db, Query{Ecosystem: "PyPI", Name: "zopeinterface", Version: "4.7.2"}); len(fs) != 0 {
		t.Errorf("zopeinterface matched %v", ids(fs))
	}
}

// TestMatchPURL: a query with only a purl is matched on what it names.
func TestMatchPURL(t *testing.T) {
	db := openTestDB(t)
	importValues(t, db, rec("GHSA-TEST-MAVEN", "Maven", "org.apache.logging.log4j:log4j-core", "ECOSYSTEM", ev("introduced", "2.0-beta9"), ev("fixed", "2.15.0")))
	fs := match(t, db,
		Query{PURL: "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1"},
		Query{PURL: "pkg:maven/org.apache.logging.log4j/log4j-core@2.17.1"},
		Query{PURL: "pkg:deb/debian/openssl@3.0.11-1"}, // OS purls need the release: no match, no error
	)
	if len(fs) != 1 || fs[0].Query != 0 || fs[0].Ecosystem != "Maven" || fs[0].Package != "org.apache.logging.log4j:log4j-core" {
		t.Errorf("got %+v", fs)
	}
}

func TestMatchCancelled(t *testing.T) {
	db := openTestDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.Match(ctx, []Query{{Ecosystem: "npm", Name: "x", Version: "1"}}); err == nil {
		t.Error("Match with a cancelled context succeeded")
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"Alpine:v3.16": "Alpine:v3.16", "Alpine:3.16.9": "Alpine:v3.16", "alpine:v3.18": "Alpine:v3.18",
		"Debian:12": "Debian:12", "Debian:12.5": "Debian:12", "debian:11": "Debian:11",
		"Ubuntu:22.04:LTS": "Ubuntu:22.04", "Ubuntu:Pro:18.04:LTS": "Ubuntu:Pro:18.04", "Ubuntu:23.10": "Ubuntu:23.10",
		"pypi": "PyPI", "GO": "Go", "crates.io": "crates.io", "Rocky Linux:9": "Rocky Linux:9", "Hex": "Hex",
	} {
		if got := normalizeEcosystem(in); got != want {
			t.Errorf("normalizeEcosystem(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"go1.21.3": "1.21.3", "go1.21": "1.21.0", "go1.22rc2": "1.22.0-rc.2", "go1.20beta1": "1.20.0-beta.1",
		"1.21.3": "1.21.3", "v1.21.3": "1.21.3", "go1.20.1 X:boringcrypto": "1.20.1",
	} {
		if got := goToolchainVersion(in); got != want {
			t.Errorf("goToolchainVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// BenchmarkMatch: ~200 inventory-shaped queries against the shared tree.
func BenchmarkMatch(b *testing.B) {
	db := openTestDB(b)
	if _, err := db.Import(context.Background(), []string{osvTestdata(b)}, nil); err != nil {
		b.Fatal(err)
	}
	qs := benchQueries()
	b.ResetTimer()
	for b.Loop() {
		if _, err := db.Match(context.Background(), qs); err != nil {
			b.Fatal(err)
		}
	}
}
