package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStatusKeepsEachBinarysEpoch(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "status")
	status := "Package: bsdutils\nStatus: install ok installed\nSource: util-linux (2.38.1-5+deb12u3)\nVersion: 1:2.38.1-5+deb12u3\n\n" +
		"Package: libuuid1\nSource: util-linux\nVersion: 2.38.1-5+deb12u3\n\n" +
		"Package: util-linux\nVersion: 2.38.1-5+deb12u3\n\n" +
		"Package: bash\nVersion: 5.2.15-2+b13\n\n"
	if err := os.WriteFile(in, []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if err := statusCmd([]string{"-in", in, "-out", out, "-set", "util-linux=2.36.1-7"}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	want := "Package: bsdutils\nStatus: install ok installed\nSource: util-linux (2.36.1-7)\nVersion: 1:2.36.1-7\n\n" +
		"Package: libuuid1\nSource: util-linux\nVersion: 2.36.1-7\n\n" +
		"Package: util-linux\nVersion: 2.36.1-7\n\n" +
		"Package: bash\nVersion: 5.2.15-2+b13\n\n"
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestCompareFindings(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "p.json")
	o := filepath.Join(dir, "o.json")
	os.WriteFile(p, []byte(`{"inventory":{"packages":[
		{"name":"bsdutils","version":"1:2.36.1-7","ecosystem":"Debian:12","sourceName":"util-linux","sourceVersion":"2.36.1-7"},
		{"name":"apt","version":"2.6.1","ecosystem":"Debian:12"},
		{"name":"libc6","version":"2.36-9","ecosystem":"Debian:12","sourceName":"glibc"}]},
		"findings":[
		{"id":"DEBIAN-CVE-2021-37600","ecosystem":"Debian:12","package":"bsdutils","affectedPackage":"util-linux","installedVersion":"1:2.36.1-7"},
		{"id":"DEBIAN-CVE-2011-3374","upstream":["CVE-2011-3374"],"ecosystem":"Debian:12","package":"apt","installedVersion":"2.6.1"},
		{"id":"DEBIAN-CVE-2010-4756","ecosystem":"Debian:12","package":"libc6","affectedPackage":"glibc","installedVersion":"2.36-9"}]}`), 0o644)
	os.WriteFile(o, []byte(`{"results":[{"source":{"path":"/var/lib/dpkg/status"},"packages":[
		{"package":{"name":"util-linux","os_package_name":"bsdutils","version":"1:2.36.1-7","ecosystem":"Debian:12"}},
		{"package":{"name":"apt","os_package_name":"apt","version":"2.6.1","ecosystem":"Debian:12"},
		 "vulnerabilities":[{"id":"CVE-2011-3374","aliases":["DEBIAN-CVE-2011-3374"]}]},
		{"package":{"name":"glibc","os_package_name":"libc6","version":"2.36-9","ecosystem":"Debian:12"},
		 "vulnerabilities":[{"id":"DEBIAN-CVE-2010-4756"}]}]}]}`), 0o644)
	pr, err := readPortcullis(p)
	if err != nil {
		t.Fatal(err)
	}
	or, err := readOSVScanner(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(or.packages) != 3 || or.packages[0].Name != "bsdutils" || or.packages[0].Source != "util-linux" {
		t.Fatalf("osv-scanner packages: %+v", or.packages)
	}
	real, aliased := compareFindings(pr, or)
	// bsdutils: only portcullis; apt: the same record under two ids, once
	// from each side.
	if real != 1 || aliased != 2 {
		t.Errorf("real %d, aliased %d; want 1, 2", real, aliased)
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("odd: %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("even: %v", m)
	}
}

func TestWriteTreeKeepsHardLinks(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("hello"), 0o644)
	if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
		t.Fatal("hard link in a temp dir:", err)
	}
	os.Symlink("a", filepath.Join(dir, "c"))
	var buf strings.Builder
	if err := writeTree(&buf, dir); err != nil {
		t.Fatal(err)
	}
	s := buf.String()
	if !strings.Contains(s, "hello") || strings.Count(s, "hello") != 1 {
		t.Errorf("content stored %d times, want once", strings.Count(s, "hello"))
	}
}
