package scanner

import (
	"archive/zip"
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/osv-scalibr/extractor"
	"github.com/google/osv-scalibr/extractor/filesystem"
)

// Each case is one image built in the test from real package database files
// (testdata/README.md says where each comes from), with the exact inventory
// it must give.
func TestExtractors(t *testing.T) {
	t.Parallel()
	const dpkgStatus = "/var/lib/dpkg/status"
	deb := func(name, version, srcName, srcVersion, purl string) Package {
		return Package{Name: name, Version: version, Ecosystem: "Debian:12", SourceName: srcName, SourceVersion: srcVersion,
			PURL: purl, Type: "dpkg", Location: dpkgStatus}
	}
	apkPkg := func(name, version, origin string) Package {
		p := Package{Name: name, Version: version, Ecosystem: "Alpine:v3.16", Type: "apk", Location: "/lib/apk/db/installed",
			PURL: "pkg:apk/alpine/" + name + "@" + version + "?arch=x86_64&distro=alpine-3.16.9"}
		if origin != name {
			p.SourceName = origin
			p.PURL += "&upstream=" + origin
		}
		return p
	}
	rhel8 := "NAME=\"Red Hat Enterprise Linux\"\nVERSION_ID=\"8.8\"\nID=\"rhel\"\nCPE_NAME=\"cpe:/o:redhat:enterprise_linux:8::baseos\"\n"
	fedora := "NAME=\"Fedora Linux\"\nVERSION_ID=40\nID=fedora\n"

	tests := []struct {
		name   string
		files  []entry
		wantOS OS
		want   []Package
	}{
		{
			name: "dpkg status with Source: lines, a removed package left out",
			files: []entry{
				file("etc/os-release", debianOSRelease),
				file("var/lib/dpkg/status", fixture(t, "dpkg/status")),
			},
			wantOS: OS{ID: "debian", VersionID: "12", PrettyName: "Debian GNU/Linux 12 (bookworm)", Ecosystem: "Debian:12"},
			want: []Package{
				deb("base-files", "12.4+deb12u11", "", "", "pkg:deb/debian/base-files@12.4%2Bdeb12u11?arch=amd64&distro=debian-12"),
				// "Source: bash (5.2.15-2)": same name, other version (binNMU).
				deb("bash", "5.2.15-2+b8", "", "5.2.15-2", "pkg:deb/debian/bash@5.2.15-2%2Bb8?arch=amd64&distro=debian-12&upstream=bash%405.2.15-2"),
				deb("libcap2", "1:2.66-4+deb12u2+b2", "", "1:2.66-4+deb12u2", "pkg:deb/debian/libcap2@1:2.66-4%2Bdeb12u2%2Bb2?arch=amd64&distro=debian-12&upstream=libcap2%401:2.66-4%2Bdeb12u2"),
				deb("libssl3", "3.0.19-1~deb12u2", "openssl", "", "pkg:deb/debian/libssl3@3.0.19-1~deb12u2?arch=amd64&distro=debian-12&upstream=openssl"),
				deb("tzdata", "2025b-0+deb12u2", "", "", "pkg:deb/debian/tzdata@2025b-0%2Bdeb12u2?arch=all&distro=debian-12"),
				deb("zlib1g", "1:1.2.13.dfsg-1", "zlib", "", "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12&upstream=zlib"),
			},
		},
		{
			name: "distroless status.d, os-release through Debian's symlink",
			files: []entry{
				symlink("etc/os-release", "../usr/lib/os-release"),
				file("usr/lib/os-release", debianOSRelease),
				file("var/lib/dpkg/status.d/libgcc-s1", fixture(t, "dpkg/status.d/libgcc-s1")),
				file("var/lib/dpkg/status.d/libpcre2-8-0", fixture(t, "dpkg/status.d/libpcre2-8-0")),
				file("var/lib/dpkg/status.d/libpcre2-8-0.md5sums", "0123456789abcdef  usr/lib/x86_64-linux-gnu/libpcre2-8.so.0\n"),
			},
			wantOS: OS{ID: "debian", VersionID: "12", PrettyName: "Debian GNU/Linux 12 (bookworm)", Ecosystem: "Debian:12"},
			want: []Package{
				{Name: "libgcc-s1", Version: "12.2.0-14+deb12u1", Ecosystem: "Debian:12", SourceName: "gcc-12", Type: "dpkg",
					PURL: "pkg:deb/debian/libgcc-s1@12.2.0-14%2Bdeb12u1?arch=amd64&distro=debian-12&upstream=gcc-12", Location: "/var/lib/dpkg/status.d/libgcc-s1"},
				{Name: "libpcre2-8-0", Version: "10.42-1+deb12u2", Ecosystem: "Debian:12", SourceName: "pcre2", Type: "dpkg",
					PURL: "pkg:deb/debian/libpcre2-8-0@10.42-1%2Bdeb12u2?arch=amd64&distro=debian-12&upstream=pcre2", Location: "/var/lib/dpkg/status.d/libpcre2-8-0"},
			},
		},
		{
			name: "apk installed database with origins",
			files: []entry{
				file("etc/os-release", alpineOSRelease),
				file("lib/apk/db/installed", fixture(t, "apk/installed")),
			},
			wantOS: OS{ID: "alpine", VersionID: "3.16.9", PrettyName: "Alpine Linux v3.16", Ecosystem: "Alpine:v3.16"},
			want: []Package{
				apkPkg("alpine-baselayout", "3.2.0-r23", "alpine-baselayout"),
				apkPkg("alpine-baselayout-data", "3.2.0-r23", "alpine-baselayout"),
				apkPkg("alpine-keys", "2.4-r1", "alpine-keys"),
				apkPkg("apk-tools", "2.12.9-r3", "apk-tools"),
				apkPkg("busybox", "1.35.0-r17", "busybox"),
				apkPkg("ca-certificates-bundle", "20230506-r0", "ca-certificates"),
				apkPkg("libc-utils", "0.7.2-r3", "libc-dev"),
				apkPkg("libcrypto1.1", "1.1.1w-r1", "openssl"),
				apkPkg("libssl1.1", "1.1.1w-r1", "openssl"),
				apkPkg("musl", "1.2.3-r3", "musl"),
				apkPkg("musl-utils", "1.2.3-r3", "musl"),
				apkPkg("scanelf", "1.3.4-r0", "pax-utils"),
				apkPkg("ssl_client", "1.35.0-r17", "busybox"),
				apkPkg("zlib", "1.2.12-r3", "zlib"),
			},
		},
		{
			name: "rpm sqlite database (rpm 4.18), epoch kept",
			files: []entry{
				file("etc/os-release", fedora),
				file("usr/lib/sysimage/rpm/rpmdb.sqlite", string(readFixture(t, "rpm/rpmdb.sqlite.gz"))),
			},
			// Fedora has no OSV ecosystem.
			wantOS: OS{ID: "fedora", VersionID: "40"},
			want: []Package{
				{Name: "hello-portcullis", Version: "2:1.2.3-4.fc40", Type: "rpm",
					PURL: "pkg:rpm/fedora/hello-portcullis@1.2.3-4.fc40?arch=noarch&distro=fedora-40&epoch=2", Location: "/usr/lib/sysimage/rpm/rpmdb.sqlite"},
				{Name: "tiny-lib", Version: "0.9-1.el9", Type: "rpm",
					PURL: "pkg:rpm/fedora/tiny-lib@0.9-1.el9?arch=noarch&distro=fedora-40", Location: "/usr/lib/sysimage/rpm/rpmdb.sqlite"},
			},
		},
		{
			name: "rpm Berkeley DB (UBI 8), source RPM as source package",
			files: []entry{
				file("etc/os-release", rhel8),
				file("var/lib/rpm/Packages", string(readFixture(t, "rpm/Packages-libuuid.gz"))),
			},
			wantOS: OS{ID: "rhel", VersionID: "8.8", Ecosystem: "Red Hat:enterprise_linux:8::baseos"},
			want: []Package{
				{Name: "libuuid", Version: "2.32.1-42.el8_8", Ecosystem: "Red Hat:enterprise_linux:8::baseos", SourceName: "util-linux", Type: "rpm",
					PURL: "pkg:rpm/rhel/libuuid@2.32.1-42.el8_8?arch=x86_64&distro=rhel-8.8&upstream=util-linux", Location: "/var/lib/rpm/Packages"},
			},
		},
		{
			name: "python dist-info METADATA and egg-info PKG-INFO",
			files: []entry{
				file("usr/lib/python3/dist-packages/PyYAML-6.0.dist-info/METADATA", fixture(t, "python/PyYAML-6.0.METADATA")),
				file("usr/lib/python3/dist-packages/PyYAML-6.0.dist-info/RECORD", "yaml/__init__.py,,\n"),
				file("usr/lib/python3/dist-packages/urllib3-1.26.12.egg-info/PKG-INFO", fixture(t, "python/urllib3-1.26.12.PKG-INFO")),
				file("usr/local/lib/python3.11/site-packages/six-1.17.0.dist-info/METADATA", fixture(t, "python/six-1.17.0.METADATA")),
			},
			want: []Package{
				{Name: "PyYAML", Version: "6.0", Ecosystem: "PyPI", PURL: "pkg:pypi/pyyaml@6.0", Type: "python",
					Location: "/usr/lib/python3/dist-packages/PyYAML-6.0.dist-info/METADATA"},
				{Name: "six", Version: "1.17.0", Ecosystem: "PyPI", PURL: "pkg:pypi/six@1.17.0", Type: "python",
					Location: "/usr/local/lib/python3.11/site-packages/six-1.17.0.dist-info/METADATA"},
				{Name: "urllib3", Version: "1.26.12", Ecosystem: "PyPI", PURL: "pkg:pypi/urllib3@1.26.12", Type: "python",
					Location: "/usr/lib/python3/dist-packages/urllib3-1.26.12.egg-info/PKG-INFO"},
			},
		},
		{
			name: "npm packages in node_modules, scoped too; fixtures and the app itself ignored",
			files: []entry{
				file("app/package.json", `{"name":"my-app","version":"1.0.0"}`),
				file("app/node_modules/lodash/package.json", fixture(t, "npm/lodash-4.17.20/package.json")),
				file("app/node_modules/lodash/test/fixtures/package.json", `{"name":"fixture","version":"0.0.1"}`),
				file("app/node_modules/@tootallnate/once/package.json", fixture(t, "npm/tootallnate-once-1.1.2/package.json")),
				file("usr/local/lib/node_modules/npm/node_modules/minimist/package.json", fixture(t, "npm/minimist-1.2.5/package.json")),
			},
			want: []Package{
				{Name: "@tootallnate/once", Version: "1.1.2", Ecosystem: "npm", PURL: "pkg:npm/%40tootallnate/once@1.1.2", Type: "npm",
					Location: "/app/node_modules/@tootallnate/once/package.json"},
				{Name: "lodash", Version: "4.17.20", Ecosystem: "npm", PURL: "pkg:npm/lodash@4.17.20", Type: "npm",
					Location: "/app/node_modules/lodash/package.json"},
				{Name: "minimist", Version: "1.2.5", Ecosystem: "npm", PURL: "pkg:npm/minimist@1.2.5", Type: "npm",
					Location: "/usr/local/lib/node_modules/npm/node_modules/minimist/package.json"},
			},
		},
		{
			name: "java jar with pom.properties and a nested jar",
			files: []entry{
				file("opt/app/app.jar", string(springBootJar(t))),
			},
			want: []Package{
				{Name: "com.example:demo", Version: "1.0.0", Ecosystem: "Maven", PURL: "pkg:maven/com.example/demo@1.0.0", Type: "java",
					Location: "/opt/app/app.jar"},
				{Name: "org.apache.logging.log4j:log4j-core", Version: "2.14.1", Ecosystem: "Maven",
					PURL: "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1", Type: "java", Location: "/opt/app/app.jar"},
			},
		},
		{
			name: "ruby gemspecs from specifications/ only",
			files: []entry{
				file("usr/share/rubygems-integration/all/specifications/rake-13.0.6.gemspec", fixture(t, "ruby/rake-13.0.6.gemspec")),
				file("var/lib/gems/3.1.0/gems/rake-13.0.6/rake.gemspec", fixture(t, "ruby/rake-13.0.6.gemspec")),
			},
			want: []Package{
				{Name: "rake", Version: "13.0.6", Ecosystem: "RubyGems", PURL: "pkg:gem/rake@13.0.6", Type: "gem",
					Location: "/usr/share/rubygems-integration/all/specifications/rake-13.0.6.gemspec"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inv := scan(t, image(t, gzLayer(t, tc.files...)))
			if inv.OS != tc.wantOS {
				t.Errorf("OS = %+v, want %+v", inv.OS, tc.wantOS)
			}
			diffPackages(t, tc.want, inv.Packages, ignoreLayer)
		})
	}
}

// A real Go binary, built here from a module that requires an old
// golang.org/x/text (from the module proxy or the module cache).
func TestGoBinary(t *testing.T) {
	t.Parallel()
	bin, goVersion := buildGoBinary(t)
	inv := scan(t, image(t, gzLayer(t, exe("usr/local/bin/hello", bin), file("usr/local/bin/not-a-binary.sh", "#!/bin/sh\necho hi\n"))))
	loc := "/usr/local/bin/hello"
	want := []Package{
		{Name: "example.com/hello", Version: "(devel)", Ecosystem: "Go", PURL: "pkg:golang/example.com/hello@%28devel%29", Type: "go-binary", Location: loc},
		{Name: "golang.org/x/text", Version: "0.3.7", Ecosystem: "Go", PURL: "pkg:golang/golang.org/x/text@v0.3.7", Type: "go-binary", Location: loc},
		{Name: "stdlib", Version: goVersion, Ecosystem: "Go", PURL: "pkg:golang/stdlib@v" + goVersion, Type: "go-binary", Location: loc},
	}
	diffPackages(t, want, inv.Packages, ignoreLayer)
}

func buildGoBinary(t *testing.T) ([]byte, string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/hello\n\ngo 1.22\n\nrequire golang.org/x/text v0.3.7\n",
		"go.sum": "golang.org/x/text v0.3.7 h1:olpwvP2KacW1ZWvsR7uQhoyTYvKAupfQrRGBFM352Gk=\n" +
			"golang.org/x/text v0.3.7/go.mod h1:u+2+/6zg+i71rQMx5EYifcz6MCKuco9NR6JIITiCfzQ=\n",
		"main.go": "package main\n\nimport (\n\t\"fmt\"\n\n\t\"golang.org/x/text/transform\"\n)\n\nfunc main() { fmt.Println(transform.Nop) }\n",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "hello")
	cmd := exec.Command(goBin, "build", "-buildvcs=false", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOWORK=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	v, err := exec.Command(goBin, "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	version, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(v)), "go"), " ")
	return bin, version
}

// A real Rust binary built with cargo auditable: osv-scalibr's own test
// binary, read from the module cache (the module is a dependency).
func TestRustAuditableBinary(t *testing.T) {
	t.Parallel()
	bin, err := os.ReadFile(filepath.Join(moduleDir(t, "github.com/google/osv-scalibr"),
		"extractor/filesystem/language/rust/cargoauditable/testdata/uses_serde_json/uses_serde_json"))
	if err != nil {
		t.Fatalf("cargo-auditable test binary: %v", err)
	}
	inv := scan(t, image(t, gzLayer(t, exe("usr/bin/uses_json", bin))))
	crate := func(name, version string) Package {
		return Package{Name: name, Version: version, Ecosystem: "crates.io", PURL: "pkg:cargo/" + name + "@" + version,
			Type: "rust-binary", Location: "/usr/bin/uses_json"}
	}
	// The binary records serde_derive's proc-macro crates as runtime
	// dependencies, so they are listed too.
	want := []Package{
		crate("itoa", "1.0.14"),
		crate("memchr", "2.7.4"),
		crate("proc-macro2", "1.0.92"),
		crate("quote", "1.0.38"),
		crate("ryu", "1.0.18"),
		crate("serde", "1.0.217"),
		crate("serde_derive", "1.0.217"),
		crate("serde_json", "1.0.135"),
		crate("syn", "2.0.95"),
		crate("unicode-ident", "1.0.14"),
		crate("uses_json", "0.1.0"),
	}
	diffPackages(t, want, inv.Packages, ignoreLayer)
}

// springBootJar builds a fat jar the way Spring Boot lays it out: its own
// pom.properties and a dependency jar under BOOT-INF/lib.
func springBootJar(t *testing.T) []byte {
	t.Helper()
	inner := zipBytes(t, map[string]string{
		"META-INF/MANIFEST.MF": "Manifest-Version: 1.0\r\nImplementation-Title: Apache Log4j Core\r\nImplementation-Version: 2.14.1\r\n\r\n",
		"META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties": "#Created by Apache Maven 3.6.3\nversion=2.14.1\ngroupId=org.apache.logging.log4j\nartifactId=log4j-core\n",
		"org/apache/logging/log4j/core/Logger.class":                        "\xca\xfe\xba\xbe",
	})
	return zipBytes(t, map[string]string{
		"META-INF/MANIFEST.MF":                           "Manifest-Version: 1.0\r\nMain-Class: org.springframework.boot.loader.JarLauncher\r\n\r\n",
		"META-INF/maven/com.example/demo/pom.properties": "version=1.0.0\ngroupId=com.example\nartifactId=demo\n",
		"BOOT-INF/classes/com/example/demo/App.class":    "\xca\xfe\xba\xbe",
		"BOOT-INF/lib/log4j-core-2.14.1.jar":             string(inner),
	})
}

func zipBytes(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A parser that panics on a hostile file costs that file, not the scan.
func TestExtractorPanicIsContained(t *testing.T) {
	t.Parallel()
	s := New(WithLogger(slog.New(slog.DiscardHandler)))
	s.extractors = append([]*extractorSpec{{
		typ:   "boom",
		wants: func(p string, _ fs.FileInfo) bool { return p == "var/lib/dpkg/status" },
		extract: func(context.Context, *filesystem.ScanInput) ([]*extractor.Package, error) {
			panic("hostile input")
		},
	}}, s.extractors...)
	inv, err := s.Scan(context.Background(), image(t, gzLayer(t, file("var/lib/dpkg/status", fixture(t, "dpkg/status")))))
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Packages) != 6 {
		t.Errorf("%d packages, want the 6 dpkg ones", len(inv.Packages))
	}
}
