package scanner

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/osv-scalibr/extractor/filesystem"
)

// Each case is an image holding lockfiles from testdata/lockfiles, with the
// exact packages it must give.
func TestLockfiles(t *testing.T) {
	t.Parallel()
	composer := func(name, version, loc string) Package {
		return Package{Name: name, Version: version, Ecosystem: "Packagist", PURL: "pkg:composer/" + name + "@" + version,
			Type: "composer", Location: loc}
	}
	nuget := func(name, version, loc string) Package {
		return Package{Name: name, Version: version, Ecosystem: "NuGet", PURL: "pkg:nuget/" + name + "@" + version,
			Type: "dotnet", Location: loc}
	}
	crate := func(name, version, loc string) Package {
		return Package{Name: name, Version: version, Ecosystem: "crates.io", PURL: "pkg:cargo/" + name + "@" + version,
			Type: "cargo", Location: loc}
	}
	tests := []struct {
		name  string
		files []entry
		want  []Package
	}{
		{
			name: "composer.lock: packages and packages-dev, versions as written; not a library's own lockfile under vendor/",
			files: []entry{
				file("srv/app/composer.lock", fixture(t, "lockfiles/composer.lock")),
				file("srv/app/composer.json", `{"require":{"guzzlehttp/guzzle":"^6.5"}}`),
				// A library's own lockfile, shipped in its sources.
				file("srv/app/vendor/acme/lib/composer.lock", `{"packages":[{"name":"acme/dev-only","version":"1.0.0"}]}`),
			},
			want: []Package{
				// dev-main of a path repository is still vendor/name: listed.
				composer("acme/internal-tools", "dev-main", "/srv/app/composer.lock"),
				composer("guzzlehttp/guzzle", "6.5.6", "/srv/app/composer.lock"),
				composer("symfony/http-kernel", "v5.4.19", "/srv/app/composer.lock"),
				composer("twig/twig", "v3.4.2", "/srv/app/composer.lock"),
			},
		},
		{
			name: "installed.json of Composer 2 and Composer 1, only under vendor/composer",
			files: []entry{
				file("srv/a/vendor/composer/installed.json", fixture(t, "lockfiles/installed-composer2.json")),
				file("srv/b/vendor/composer/installed.json", fixture(t, "lockfiles/installed-composer1.json")),
				file("srv/c/installed.json", fixture(t, "lockfiles/installed-composer1.json")),
				file("srv/d/composer/installed.json", fixture(t, "lockfiles/installed-composer1.json")),
			},
			want: []Package{
				composer("guzzlehttp/guzzle", "6.5.6", "/srv/b/vendor/composer/installed.json"),
				composer("guzzlehttp/guzzle", "7.4.4", "/srv/a/vendor/composer/installed.json"),
				composer("laravel/framework", "v8.74.0", "/srv/a/vendor/composer/installed.json"),
				composer("twig/twig", "v1.44.6", "/srv/b/vendor/composer/installed.json"),
			},
		},
		{
			name: "deps.json: packages only, not the application or its projects",
			files: []entry{
				file("app/WebApp.deps.json", fixture(t, "lockfiles/app.deps.json")),
				file("app/WebApp.runtimeconfig.json", `{"runtimeOptions":{"tfm":"net6.0"}}`),
			},
			want: []Package{
				nuget("Newtonsoft.Json", "12.0.3", "/app/WebApp.deps.json"),
			},
		},
		{
			name: "packages.lock.json: once per package over target frameworks, no Project entries",
			files: []entry{
				file("src/WebApp/packages.lock.json", fixture(t, "lockfiles/packages.lock.json")),
			},
			want: []Package{
				nuget("Microsoft.Data.SqlClient", "2.1.4", "/src/WebApp/packages.lock.json"),
				nuget("Newtonsoft.Json", "13.0.1", "/src/WebApp/packages.lock.json"),
			},
		},
		{
			name: "Cargo.lock v1, v3, v4: registry and sparse sources only, no path or git dependencies; not a crate's own in Cargo's cache",
			files: []entry{
				file("src/v1/Cargo.lock", fixture(t, "lockfiles/Cargo-v1.lock")),
				file("src/v3/Cargo.lock", fixture(t, "lockfiles/Cargo-v3.lock")),
				file("src/v4/Cargo.lock", fixture(t, "lockfiles/Cargo-v4.lock")),
				// A downloaded crate's own lockfile, in Cargo's cache.
				file("usr/local/cargo/registry/src/index.crates.io-6f17d22bba15001f/app-1.0.0/Cargo.lock",
					"[[package]]\nname = \"dev-only\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n"),
			},
			want: []Package{
				crate("anyhow", "1.0.95", "/src/v4/Cargo.lock"),
				crate("libc", "0.2.80", "/src/v1/Cargo.lock"),
				crate("regex", "1.5.4", "/src/v3/Cargo.lock"),
				crate("serde", "1.0.217", "/src/v4/Cargo.lock"),
				crate("time", "0.1.43", "/src/v1/Cargo.lock"),
				crate("tokio", "1.8.3", "/src/v3/Cargo.lock"),
			},
		},
		{
			name: "one crate named by two Cargo.lock files is listed once",
			files: []entry{
				file("src/a/Cargo.lock", fixture(t, "lockfiles/Cargo-v4.lock")),
				file("src/b/Cargo.lock", fixture(t, "lockfiles/Cargo-v4.lock")),
			},
			want: []Package{
				crate("anyhow", "1.0.95", "/src/a/Cargo.lock"),
				crate("serde", "1.0.217", "/src/a/Cargo.lock"),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			inv := scan(t, image(t, gzLayer(t, tc.files...)))
			diffPackages(t, tc.want, inv.Packages, ignoreLayer)
		})
	}
}

// A Cargo.lock beside the cargo-auditable binary built from it: the crates
// both name are listed once, as the binary's; a crate only the lockfile
// names stays the lockfile's.
func TestCargoLockBesideAuditableBinary(t *testing.T) {
	t.Parallel()
	bin, err := os.ReadFile(filepath.Join(moduleDir(t, "github.com/google/osv-scalibr"),
		"extractor/filesystem/language/rust/cargoauditable/testdata/uses_serde_json/uses_serde_json"))
	if err != nil {
		t.Fatalf("cargo-auditable test binary: %v", err)
	}
	inv := scan(t, image(t, gzLayer(t,
		file("build/Cargo.lock", fixture(t, "lockfiles/Cargo-v4.lock")),
		exe("usr/bin/uses_json", bin),
	)))
	var serde, anyhow []Package
	for _, p := range inv.Packages {
		switch p.Name {
		case "serde":
			serde = append(serde, p)
		case "anyhow":
			anyhow = append(anyhow, p)
		}
	}
	if len(serde) != 1 || serde[0].Type != "rust-binary" || serde[0].Location != "/usr/bin/uses_json" {
		t.Errorf("serde listed as %+v, want once, from the binary", serde)
	}
	if len(anyhow) != 1 || anyhow[0].Type != "cargo" || anyhow[0].Location != "/build/Cargo.lock" {
		t.Errorf("anyhow listed as %+v, want once, from Cargo.lock", anyhow)
	}
	// uses_json 0.1.0 is the binary's own crate (the lockfile's has no
	// source): once, from the binary.
	if n := countNamed(inv.Packages, "uses_json"); n != 1 {
		t.Errorf("uses_json listed %d times, want 1", n)
	}
}

func countNamed(pkgs []Package, name string) int {
	n := 0
	for _, p := range pkgs {
		if p.Name == name {
			n++
		}
	}
	return n
}

func TestIsAppLockfile(t *testing.T) {
	t.Parallel()
	for p, want := range map[string]bool{
		"srv/app/composer.lock":                        true,
		"composer.lock":                                true,
		"srv/app/vendor/symfony/console/composer.lock": false,
		"src/app/Cargo.lock":                           true,
		"root/.cargo/registry/src/index.crates.io-6f17d22bba15001f/ripgrep-14.1.0/Cargo.lock": false,
		"usr/local/cargo/git/checkouts/gitdep-1f2e3d/1f2e3d4/Cargo.lock":                      false,
		"src/app/vendor/regex/Cargo.lock":                                                     false,
		"src/registry/Cargo.lock":                                                             true,
		"src/app/Cargo.lock.orig":                                                             false,
	} {
		base := "Cargo.lock"
		if strings.Contains(p, "composer") {
			base = "composer.lock"
		}
		if got := isAppLockfile(p, base); got != want {
			t.Errorf("isAppLockfile(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestParseCargoLock(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     string // name@version, space-separated
		wantErr  string
	}{
		{"empty", "", "", ""},
		{"no source: path dependency", "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\n", "", ""},
		{"git source", "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"git+https://x/y#abc\"\n", "", ""},
		{"registry", "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n", "a@1.0.0", ""},
		{"sparse", "[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"sparse+https://index.crates.io/\"\n", "a@1.0.0", ""},
		{"keys in another order, spaces, CRLF", "[[package]]\r\nsource=\"registry+x\"\r\n  version = \"2.0.0-rc.1\"\r\nname = \"b\"\r\n", "b@2.0.0-rc.1", ""},
		{"a table ends the package", "[[package]]\nname = \"a\"\n[metadata]\nversion = \"1\"\nsource = \"registry+x\"\n", "", ""},
		{"missing version", "[[package]]\nname = \"a\"\nsource = \"registry+x\"\n", "", ""},
		{"not a string", "[[package]]\nname = a\n", "", "name is not a string"},
		{"too long a line", "[[package]]\nname = \"" + strings.Repeat("a", maxCargoLockLine) + "\"\n", "", "longer than"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nvs, err := parseCargoLock([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := joinNV(nvs); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseComposerJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     string
		wantErr  bool
	}{
		{"Composer 1 list", `[{"name":"a/b","version":"v1.0.0"}]`, "a/b@v1.0.0", false},
		{"Composer 2 object", `{"packages":[{"name":"a/b","version":"1.0"}],"dev":true}`, "a/b@1.0", false},
		{"lock with dev", `{"packages":[{"name":"a/b","version":"1"}],"packages-dev":[{"name":"c/d","version":"2"}]}`, "a/b@1 c/d@2", false},
		{"BOM and white space", "\ufeff \n[{\"name\":\"a/b\",\"version\":\"1\"}]", "a/b@1", false},
		{"no vendor, empty parts, no version", `[{"name":"php","version":"8.1"},{"name":"/b","version":"1"},{"name":"a/","version":"1"},{"name":"a/b/c","version":"1"},{"name":"a/b"}]`, "", false},
		{"null", `null`, "", false},
		{"wrong types", `{"packages":{"a":"b"}}`, "", true},
		{"not JSON", `packages = []`, "", true},
		{"truncated", `{"packages":[{"name":"a/b"`, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nvs, err := parseComposerJSON([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got := joinNV(nvs); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func joinNV(nvs []nameVersion) string {
	var parts []string
	for _, nv := range nvs {
		parts = append(parts, nv.name+"@"+nv.version)
	}
	return strings.Join(parts, " ")
}

// fuzzLockfile runs the extractor of the lockfile at p on data as the
// walker does, and checks what it returns is well-formed.
func fuzzLockfile(t *testing.T, p string, data []byte) {
	info := (&tar.Header{Name: p, Size: int64(len(data)), Mode: 0o644, Typeflag: tar.TypeReg}).FileInfo()
	for _, s := range New().extractors {
		if !s.wants(p, info) {
			continue
		}
		in := &filesystem.ScanInput{Path: p, Info: info, Reader: memReader{bytes.NewReader(data), data}}
		pkgs, _ := s.run(context.Background(), in)
		for _, sp := range pkgs {
			if f, ok := convert(s, sp, p, 0); ok && (f.pkg.Name == "" || f.pkg.Version == "" || f.pkg.Location != "/"+p) {
				t.Fatalf("%s: package %+v", s.typ, f.pkg)
			}
		}
	}
}

func FuzzComposerJSON(f *testing.F) {
	for _, name := range []string{"composer.lock", "installed-composer1.json", "installed-composer2.json"} {
		f.Add(readFixture(f, "lockfiles/"+name), true)
	}
	f.Add([]byte(`[{"name":"a/b","version":"v1"}]`), false)
	f.Fuzz(func(t *testing.T, data []byte, lock bool) {
		p := "app/vendor/composer/installed.json"
		if lock {
			p = "app/composer.lock"
		}
		fuzzLockfile(t, p, data)
	})
}

func FuzzDepsJSON(f *testing.F) {
	f.Add(readFixture(f, "lockfiles/app.deps.json"))
	f.Add([]byte(`{"libraries":{"A/1":{"type":"package"},"B/2/3":{"type":"package"},"/":{}}}`))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLockfile(t, "app/x.deps.json", data) })
}

func FuzzPackagesLockJSON(f *testing.F) {
	f.Add(readFixture(f, "lockfiles/packages.lock.json"))
	f.Add([]byte(`{"version":1,"dependencies":{"net6.0":{"A":{"resolved":"1.0.0"}},"x":null}}`))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLockfile(t, "src/packages.lock.json", data) })
}

func FuzzCargoLock(f *testing.F) {
	for _, name := range []string{"Cargo-v1.lock", "Cargo-v3.lock", "Cargo-v4.lock"} {
		f.Add(readFixture(f, "lockfiles/"+name))
	}
	f.Add([]byte("[[package]]\nname = \"a\\u0000\"\nversion = '1'\nsource = \"registry+\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzLockfile(t, "src/Cargo.lock", data) })
}

// The SBOMs carry the purls of lockfile packages: pkg:composer with the
// vendor as namespace, pkg:nuget, pkg:cargo.
func TestLockfileSBOMPurls(t *testing.T) {
	t.Parallel()
	inv := scan(t, image(t, gzLayer(t,
		file("srv/app/composer.lock", fixture(t, "lockfiles/composer.lock")),
		file("app/WebApp.deps.json", fixture(t, "lockfiles/app.deps.json")),
		file("src/Cargo.lock", fixture(t, "lockfiles/Cargo-v3.lock")),
	)))
	want := []string{
		"pkg:composer/guzzlehttp/guzzle@6.5.6",
		"pkg:composer/symfony/http-kernel@v5.4.19",
		"pkg:nuget/Newtonsoft.Json@12.0.3",
		"pkg:cargo/tokio@1.8.3",
	}
	var cdxOut, spdxOut bytes.Buffer
	if err := WriteCycloneDX(&cdxOut, inv, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteSPDX(&spdxOut, inv); err != nil {
		t.Fatal(err)
	}
	for _, p := range want {
		if !strings.Contains(cdxOut.String(), `"purl": "`+p+`"`) && !strings.Contains(cdxOut.String(), `"purl":"`+p+`"`) {
			t.Errorf("CycloneDX has no component with purl %s", p)
		}
		if !strings.Contains(spdxOut.String(), `"referenceLocator":"`+p+`"`) && !strings.Contains(spdxOut.String(), `"referenceLocator": "`+p+`"`) {
			t.Errorf("SPDX has no purl reference %s", p)
		}
	}
}

func TestParseDepsJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     string
		wantErr  bool
	}{
		{"packages sorted, projects left out", `{"libraries":{"Zeta/1.0.0":{"type":"package"},"App/1.0.0":{"type":"project"},"Alpha/2.0.0-rc.1":{"type":"Package"}}}`, "Alpha@2.0.0-rc.1 Zeta@1.0.0", false},
		{"no type, reference assemblies", `{"libraries":{"A/1.0.0":{},"B/1.0.0":{"type":"referenceassembly"}}}`, "", false},
		{"bad keys", `{"libraries":{"A":{"type":"package"},"/1":{"type":"package"},"A/":{"type":"package"},"A/1/2":{"type":"package"}}}`, "", false},
		{"no libraries: a vite editor.deps.json", `{"imports":["x"]}`, "", false},
		{"libraries of the wrong type", `{"libraries":["A/1"]}`, "", true},
		{"not JSON", `A/1`, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nvs, err := parseDepsJSON([]byte(tc.in))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got := joinNV(nvs); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}
