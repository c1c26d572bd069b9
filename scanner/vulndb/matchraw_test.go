package vulndb

import (
	"reflect"
	"testing"
)

// screenAgrees checks that matching the binary value of e in place gives
// what matchEntry gives on the entry decoded whole (the matching of every
// entry before the screen existed), for version v.
func screenAgrees(t *testing.T, s *screen, raw []byte, eco, v string) {
	t.Helper()
	e, err := decodeEntry(raw)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	want, wantOK := matchEntry(&e, &parsedVersions{eco: eco, v: v})
	// The screen side parses through the screen's cache (if any) and
	// keeps its comparisons, as Match does; matchEntry parses each time.
	got, pkg, ok, err := s.match(raw, &parsedVersions{eco: eco, v: v, cache: s.bounds, memo: &compareMemo{}}, map[string]bool{})
	if err != nil {
		t.Fatalf("%s at %s %q: screen: %v", e.ID, eco, v, err)
	}
	if ok != wantOK || (ok && (!reflect.DeepEqual(got, want) || pkg != e.Package)) {
		t.Fatalf("%s at %s %q: screen says %v %+v (package %q), matchEntry %v %+v", e.ID, eco, v, ok, got, pkg, wantOK, want)
	}
}

// Matching a binary index value in place finds exactly what decoding it
// whole and matchEntry find, for every entry of the shared real records
// at every version their ranges and lists name and around them. One
// screen serves all of them, so its parsed-bound cache is shared too.
func TestScreenMatchesDecodedEntry(t *testing.T) {
	s := screen{bounds: newVersionCache()}
	entries, hits := 0, 0
	eachSampledRecord(t, func(_ string, rec *record) {
		for _, pe := range rec.Entries {
			raw := encodeEntry(&pe.Entry)
			versions := versionsAround(&pe.Entry, "0", "0.0.1", "1.0", "99999.0.0", "not a version")
			for _, v := range versions {
				screenAgrees(t, &s, raw, pe.Ecosystem, v)
				if e, _ := decodeEntry(raw); func() bool {
					_, ok := matchEntry(&e, &parsedVersions{eco: pe.Ecosystem, v: v})
					return ok
				}() {
					hits++
				}
			}
			entries++
		}
	})
	if entries < 1000 || hits < 1000 {
		t.Errorf("only %d entries and %d hits compared", entries, hits)
	}
}

// FuzzScreenMatch: index values come from a file on disk. Matching one
// in place never panics, and whenever the value decodes whole it agrees
// with matchEntry.
func FuzzScreenMatch(f *testing.F) {
	f.Add(encodeEntry(&entry{ID: "GHSA-1", Package: "lodash", Aliases: []string{"CVE-1"}, Summary: "s",
		Parts: []part{{Ranges: []vrange{{Semver: true, Events: []event{{evIntroduced, "0"}, {evFixed, "1.2.3"}}}},
			Versions: []string{"0.9"}, Severity: severity{Level: "HIGH", Score: 7.5, Vector: "CVSS:3.1/AV:N"}}}}), "npm", "1.0.0")
	f.Add(encodeEntry(&entry{ID: "DEBIAN-CVE-1", Package: "glibc",
		Parts: []part{{Ranges: []vrange{{Events: []event{{evIntroduced, "0"}, {evFixed, "2.36-9+deb12u4"}}}}},
			{Ranges: []vrange{{Events: []event{{evIntroduced, "2.30"}, {evLastAffected, "2.36-9+deb12u9"}, {evLimit, "*"}}}}}}}), "Debian:12", "2.36-9")
	f.Add([]byte{binaryEntryTag}, "PyPI", "1")
	f.Add([]byte{binaryEntryTag, 0xff, 0xff, 0xff, 0xff, 0x0f}, "Go", "1.0.0")
	f.Add([]byte(`{"id":"X","pk":"p","p":[]}`), "npm", "1")
	f.Fuzz(func(t *testing.T, raw []byte, eco, v string) {
		s := screen{bounds: newVersionCache()}
		_, _, _, err := s.match(raw, &parsedVersions{eco: eco, v: v}, map[string]bool{})
		if _, derr := decodeEntry(raw); derr != nil || err != nil {
			if derr == nil && err != errNotBinary {
				t.Fatalf("screen fails on a value that decodes: %v", err)
			}
			return
		}
		screenAgrees(t, &s, raw, eco, v)
	})
}
