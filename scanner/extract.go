package scanner

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"testing/fstest"

	"github.com/google/osv-scalibr/extractor"
	"github.com/google/osv-scalibr/extractor/filesystem"
	"github.com/google/osv-scalibr/extractor/filesystem/language/dotnet/packageslockjson"
	"github.com/google/osv-scalibr/extractor/filesystem/language/golang/gobinary"
	"github.com/google/osv-scalibr/extractor/filesystem/language/java/archive"
	"github.com/google/osv-scalibr/extractor/filesystem/language/javascript/packagejson"
	"github.com/google/osv-scalibr/extractor/filesystem/language/python/wheelegg"
	"github.com/google/osv-scalibr/extractor/filesystem/language/ruby/gemspec"
	"github.com/google/osv-scalibr/extractor/filesystem/language/rust/cargoauditable"
	"github.com/google/osv-scalibr/extractor/filesystem/os/apk"
	apkmeta "github.com/google/osv-scalibr/extractor/filesystem/os/apk/metadata"
	"github.com/google/osv-scalibr/extractor/filesystem/os/dpkg"
	dpkgmeta "github.com/google/osv-scalibr/extractor/filesystem/os/dpkg/metadata"
	rpmmeta "github.com/google/osv-scalibr/extractor/filesystem/os/rpm/metadata"
	"github.com/google/osv-scalibr/purl"

	cpb "github.com/google/osv-scalibr/binary/proto/config_go_proto"
)

// extractorSpec is one kind of package source: which files it reads and
// how it turns them into packages.
type extractorSpec struct {
	typ       string // Package.Type
	ecosystem string // OSV ecosystem of language packages; "" for OS packages
	// wants decides from the path and tar header alone, before any byte of
	// the file is read.
	wants func(p string, info fs.FileInfo) bool
	// executable extractors only look at ELF/PE/Mach-O files containing
	// marker; the check runs on the bytes already in memory.
	marker []byte
	// extract returns the packages in the file; it sees the file through a
	// scalibr ScanInput backed by memory.
	extract func(ctx context.Context, in *filesystem.ScanInput) ([]*extractor.Package, error)
	// packageDB marks the OS package databases: one larger than
	// WithMaxPackageDBSize fails the scan.
	packageDB bool
	// countRecords, if set, counts the file's package records (at least as
	// many as extract would return) before it is parsed, so a database
	// listing too many packages fails before it costs memory.
	countRecords func(data []byte) int
	// metadata reports whether the file at p is a small metadata file,
	// skipped above WithMaxMetadataSize; nil for none.
	metadata func(p string) bool
	// check runs on the file's bytes before extract and may refuse them
	// (Java archive bombs).
	check func(ctx context.Context, p string, data []byte) error
}

// goBuildInfoMagic starts the build information section of Go binaries
// (debug/buildinfo); cargo-auditable stores its data in a ".dep-v0" section.
var (
	goBuildInfoMagic = []byte("\xff Go buildinf:")
	rustAuditSection = []byte(".dep-v0")
)

// newExtractors wires osv-scalibr's single-file extractors. Each one is
// given the file from memory (an io.ReaderAt over the bytes and an fs.FS
// holding just that file), which is all these extractors read. scalibr's
// own size limits are lifted because the walker applies (and logs) ours.
func newExtractors(sc *Scanner) []*extractorSpec {
	noLimit := int64(1) << 62
	hashJars := false // only for deps.dev lookups, and costs a SHA-1 of every jar
	cfg := &cpb.PluginConfig{MaxFileSizeBytes: noLimit}
	javaCfg := &cpb.PluginConfig{
		MaxFileSizeBytes: noLimit,
		PluginSpecific: []*cpb.PluginSpecificConfig{{Config: &cpb.PluginSpecificConfig_JavaArchive{
			// checkArchive already refused archives past these bounds;
			// scalibr's own copies of them are a second line.
			JavaArchive: &cpb.JavaArchiveConfig{
				MaxOpenedBytes: sc.maxArchiveBytes,
				MaxZipDepth:    int32(min(sc.maxArchiveDepth, 1<<30)),
				HashJars:       &hashJars,
			},
		}}},
	}
	mustNew := func(newFn func(*cpb.PluginConfig) (filesystem.Extractor, error), c *cpb.PluginConfig) filesystem.Extractor {
		e, err := newFn(c)
		if err != nil {
			// The constructors only fail on invalid plugin-specific config,
			// which is fixed here: a failure is a programming error.
			panic("scanner: osv-scalibr extractor: " + err.Error())
		}
		return e
	}
	byFileRequired := func(e filesystem.Extractor) func(string, fs.FileInfo) bool {
		return func(p string, info fs.FileInfo) bool { return e.FileRequired(fileAPI{p, info}) }
	}
	run := func(e filesystem.Extractor) func(context.Context, *filesystem.ScanInput) ([]*extractor.Package, error) {
		return func(ctx context.Context, in *filesystem.ScanInput) ([]*extractor.Package, error) {
			inv, err := e.Extract(ctx, in)
			return inv.Packages, err
		}
	}

	dpkgX := mustNew(dpkg.New, cfg)
	apkX := mustNew(apk.New, cfg)
	goX := mustNew(gobinary.New, cfg)
	rustX := mustNew(cargoauditable.New, cfg)
	pyX := mustNew(wheelegg.New, cfg)
	npmX := mustNew(packagejson.New, cfg)
	javaX := mustNew(archive.New, javaCfg)
	gemX := mustNew(gemspec.New, cfg)
	nugetLockX := mustNew(packageslockjson.New, cfg)

	return []*extractorSpec{
		{typ: "dpkg", wants: byFileRequired(dpkgX), extract: run(dpkgX), packageDB: true, countRecords: countParagraphs},
		{typ: "apk", wants: byFileRequired(apkX), extract: run(apkX), packageDB: true, countRecords: countParagraphs},
		{typ: "rpm", wants: wantsRPMDB, extract: extractRPMDB, packageDB: true},
		{typ: "go-binary", ecosystem: "Go", wants: byFileRequired(goX), marker: goBuildInfoMagic, extract: run(goX)},
		{typ: "rust-binary", ecosystem: "crates.io", wants: byFileRequired(rustX), marker: rustAuditSection, extract: run(rustX)},
		{typ: "python", ecosystem: "PyPI", wants: byFileRequired(pyX), extract: run(pyX),
			// An .egg is a zip archive; the rest are metadata files.
			metadata: func(p string) bool { return !strings.HasSuffix(p, ".egg") }},
		{typ: "npm", ecosystem: "npm", wants: func(p string, info fs.FileInfo) bool {
			return isNodeModulesPackage(p) && npmX.FileRequired(fileAPI{p, info})
		}, extract: run(npmX), metadata: always},
		{typ: "java", ecosystem: "Maven", wants: byFileRequired(javaX), extract: run(javaX), check: sc.checkArchive},
		{typ: "gem", ecosystem: "RubyGems", wants: func(p string, info fs.FileInfo) bool {
			// Installed gems have a generated spec in specifications/; the
			// gemspec shipped inside gems/<name>/ would count them twice.
			return path.Base(path.Dir(p)) == "specifications" && gemX.FileRequired(fileAPI{p, info})
		}, extract: run(gemX), metadata: always},
		{typ: "composer", ecosystem: "Packagist", wants: func(p string, _ fs.FileInfo) bool {
			return isAppLockfile(p, "composer.lock") || isComposerInstalled(p)
		}, extract: lockfileExtract(purl.TypeComposer, parseComposerJSON), metadata: always},
		{typ: "dotnet", ecosystem: "NuGet", wants: func(p string, _ fs.FileInfo) bool { return isDepsJSON(p) },
			extract: lockfileExtract(purl.TypeNuget, parseDepsJSON), metadata: always},
		{typ: "dotnet", ecosystem: "NuGet", wants: byFileRequired(nugetLockX), extract: func(ctx context.Context, in *filesystem.ScanInput) ([]*extractor.Package, error) {
			inv, err := nugetLockX.Extract(ctx, in)
			return nugetLockPackages(in.Path, inv.Packages), err
		}, metadata: always},
		{typ: "cargo", ecosystem: "crates.io", wants: func(p string, _ fs.FileInfo) bool {
			return isAppLockfile(p, "Cargo.lock")
		}, extract: lockfileExtract(purl.TypeCargo, parseCargoLock), metadata: always},
	}
}

func always(string) bool { return true }

// countParagraphs counts the records of dpkg's and apk's databases, which
// are paragraphs separated by blank lines; it over-counts at worst.
func countParagraphs(data []byte) int {
	data = bytes.TrimRight(data, "\n")
	if len(data) == 0 {
		return 0
	}
	return bytes.Count(data, []byte("\n\n")) + 1
}

// isNodeModulesPackage accepts node_modules/<pkg>/package.json and
// node_modules/@scope/<pkg>/package.json, not the package.json files of
// test fixtures and examples deeper inside a package.
func isNodeModulesPackage(p string) bool {
	dir := path.Dir(p)
	parent := path.Dir(dir)
	if path.Base(parent) == "node_modules" {
		return true
	}
	return strings.HasPrefix(path.Base(parent), "@") && path.Base(path.Dir(parent)) == "node_modules"
}

// fileAPI is scalibr's view of a file during the walk: path and tar header.
type fileAPI struct {
	p    string
	info fs.FileInfo
}

func (f fileAPI) Path() string               { return f.p }
func (f fileAPI) Stat() (fs.FileInfo, error) { return f.info, nil }

// isExecutableFormat recognises ELF, PE and Mach-O headers, so scripts and
// data files marked executable are not read into memory.
func isExecutableFormat(head []byte) bool {
	for _, m := range [][]byte{
		{0x7f, 'E', 'L', 'F'},
		{'M', 'Z'},
		{0xfe, 0xed, 0xfa, 0xce}, {0xfe, 0xed, 0xfa, 0xcf},
		{0xce, 0xfa, 0xed, 0xfe}, {0xcf, 0xfa, 0xed, 0xfe},
		{0xca, 0xfe, 0xba, 0xbe},
	} {
		if bytes.HasPrefix(head, m) {
			return true
		}
	}
	return false
}

// extract runs the extractors that want the regular file at p and stores
// what they found, replacing what a lower layer had at p.
func (w *layerWalker) extract(ctx context.Context, p string, hdr *tar.Header, r io.Reader, old *pathEntry) error {
	info := hdr.FileInfo()
	var specs []*extractorSpec
	binary := false
	for _, s := range w.s.extractors {
		if s.wants(p, info) {
			specs = append(specs, s)
			binary = binary || s.marker != nil
		}
	}
	if len(specs) == 0 {
		return nil
	}
	var head []byte
	if binary {
		// Sniff the format before reading a possibly large file.
		var h [4]byte
		n, err := io.ReadFull(r, h[:min(int64(len(h)), hdr.Size)])
		if err != nil {
			return fmt.Errorf("read file: %w", err)
		}
		head = h[:n]
		if !isExecutableFormat(head) {
			specs = withoutMarkers(specs)
			if len(specs) == 0 {
				return nil
			}
		}
	}
	limit, err := w.sizeLimit(p, hdr, specs)
	if err != nil {
		return err
	}
	data, err := w.read(ctx, p, hdr, r, limit, head)
	if err != nil || data == nil {
		return err
	}
	entry := &pathEntry{layer: w.index}
	for _, s := range specs {
		if s.marker != nil && !bytes.Contains(data, s.marker) {
			continue
		}
		if s.countRecords != nil {
			if n, before := s.countRecords(data), w.st.packageCount+len(entry.pkgs); before+n > w.s.maxPackages {
				return limitError("/"+p, fmt.Sprintf("%d package records (%d packages found before)", n, before), int64(w.s.maxPackages), "WithMaxPackages")
			}
		}
		if s.check != nil {
			if err := s.check(ctx, p, data); err != nil {
				return err
			}
		}
		in := &filesystem.ScanInput{
			// The extractors look up etc/os-release in FS (the dpkg and apk
			// ones log when it is missing); the OS is decided later from the
			// final filesystem, so an empty one keeps them quiet.
			FS:     fstest.MapFS{p: {Data: data, Mode: info.Mode()}, "etc/os-release": {}},
			Path:   p,
			Info:   info,
			Reader: memReader{bytes.NewReader(data), data},
		}
		pkgs, err := s.run(ctx, in)
		if err != nil {
			// One unreadable file must not fail the scan of the image; keep
			// whatever was parsed before the error.
			w.s.log.WarnContext(ctx, "extractor failed", "extractor", s.typ, "layer", w.index, "path", "/"+p, "error", err)
		}
		for _, sp := range pkgs {
			if f, ok := convert(s, sp, p, w.index); ok {
				entry.pkgs = append(entry.pkgs, f)
			}
		}
	}
	if len(entry.pkgs) == 0 {
		return nil // nothing to remember: replace already dropped what was here
	}
	w.st.put(p, entry, old)
	if w.st.packageCount > w.s.maxPackages {
		return limitError("/"+p, "packages in the image", int64(w.s.maxPackages), "WithMaxPackages")
	}
	if w.st.packageBytes > w.s.maxInventoryBytes {
		return limitError("/"+p, "bytes of package names, versions and locations in the image", w.s.maxInventoryBytes, "WithMaxInventoryBytes")
	}
	return nil
}

// sizeLimit is the largest file at p the walker reads for specs: an OS
// package database larger than its bound fails the scan (losing every OS
// package quietly would be worse); metadata files have a smaller limit than
// archives and executables, and files above it are skipped.
func (w *layerWalker) sizeLimit(p string, hdr *tar.Header, specs []*extractorSpec) (int64, error) {
	metadataOnly := true
	for _, s := range specs {
		if s.packageDB && hdr.Size > w.s.maxPackageDBSize {
			return 0, limitError("/"+p, fmt.Sprintf("package database of %d bytes", hdr.Size), w.s.maxPackageDBSize, "WithMaxPackageDBSize")
		}
		metadataOnly = metadataOnly && s.metadata != nil && s.metadata(p)
	}
	if metadataOnly {
		return min(w.s.maxFileSize, w.s.maxMetadataSize), nil
	}
	return w.s.maxFileSize, nil
}

// memReader is the Reader of a ScanInput made by the walker: scalibr's
// extractors see the bytes.Reader (and its ReaderAt and Seeker), ours take
// data instead of copying the file again (inputBytes).
type memReader struct {
	*bytes.Reader
	data []byte
}

// run calls the extractor, turning a panic into an error: the parsers see
// files from untrusted images, and one bad file must not take the proxy down.
func (s *extractorSpec) run(ctx context.Context, in *filesystem.ScanInput) (pkgs []*extractor.Package, err error) {
	defer func() {
		if r := recover(); r != nil {
			pkgs, err = nil, fmt.Errorf("extractor panicked: %v", r)
		}
	}()
	return s.extract(ctx, in)
}

func withoutMarkers(specs []*extractorSpec) []*extractorSpec {
	out := specs[:0:0]
	for _, s := range specs {
		if s.marker == nil {
			out = append(out, s)
		}
	}
	return out
}

// convert maps a scalibr package to ours. OS packages get their ecosystem
// and purl at the end, once the OS is known.
func convert(s *extractorSpec, sp *extractor.Package, p string, layer int) (found, bool) {
	if sp == nil || sp.Name == "" || sp.Version == "" {
		return found{}, false
	}
	loc := sp.Location.PathOrEmpty() // for nested jars, the outer jar in the image
	if loc == "" {
		loc = p
	}
	pkg := Package{
		Name:      sp.Name,
		Version:   sp.Version,
		Ecosystem: s.ecosystem,
		Type:      s.typ,
		Location:  "/" + strings.TrimPrefix(loc, "/"),
	}
	f := found{layer: layer}
	switch m := sp.Metadata.(type) {
	case *dpkgmeta.Metadata:
		pkg.Name = cmp.Or(m.PackageName, pkg.Name)
		f.os = &osInfo{arch: m.Architecture}
		pkg.SourceName, pkg.SourceVersion = sourceFields(pkg, m.SourceName, m.SourceVersion)
	case *apkmeta.Metadata:
		f.os = &osInfo{arch: m.Architecture}
		pkg.SourceName, pkg.SourceVersion = sourceFields(pkg, m.OriginName, "")
	case *rpmmeta.Metadata:
		f.os = &osInfo{arch: m.Architecture, epoch: m.Epoch}
		if m.Epoch > 0 {
			// OSV and rpm compare epoch:version-release.
			pkg.Version = strconv.Itoa(m.Epoch) + ":" + pkg.Version
		}
		name, version := splitSourceRPM(m.SourceRPM)
		if version != "" && m.Epoch > 0 {
			// A source RPM file name has no epoch; it shares the binary's.
			version = strconv.Itoa(m.Epoch) + ":" + version
		}
		pkg.SourceName, pkg.SourceVersion = sourceFields(pkg, name, version)
	}
	switch s.typ {
	case "go-binary":
		if sp.Name == "go" {
			pkg.Name = "stdlib" // OSV names the Go standard library "stdlib"
		}
		pkg.PURL = goPURL(pkg.Name, pkg.Version)
	case "java":
		if sp.Name == "unknown" || strings.HasPrefix(sp.Name, ":") {
			return found{}, false // a jar scalibr could not identify
		}
		pkg.PURL = purlString(sp)
	case "dpkg", "apk", "rpm":
	default:
		pkg.PURL = purlString(sp)
	}
	f.pkg = pkg
	return f, true
}

// sourceFields returns the source package name and version, each empty when
// it equals the binary package's (the Package contract).
func sourceFields(pkg Package, name, version string) (string, string) {
	if name == pkg.Name {
		name = ""
	}
	if version == pkg.Version {
		version = ""
	}
	return name, version
}

// splitSourceRPM turns "openssl-3.0.7-27.el9.src.rpm" into
// ("openssl", "3.0.7-27.el9").
func splitSourceRPM(srpm string) (string, string) {
	s := strings.TrimSuffix(strings.TrimSuffix(srpm, ".rpm"), ".src")
	s = strings.TrimSuffix(s, ".nosrc")
	rel := strings.LastIndexByte(s, '-')
	if rel <= 0 {
		return "", ""
	}
	ver := strings.LastIndexByte(s[:rel], '-')
	if ver <= 0 {
		return "", ""
	}
	return s[:ver], s[ver+1:]
}

// purlString is scalibr's purl for a language package without qualifiers:
// they describe the scan (npm's "source=UNKNOWN"), not the package.
func purlString(sp *extractor.Package) string {
	u := sp.PURL()
	if u == nil {
		return ""
	}
	u.Qualifiers = nil
	return u.String()
}

// goPURL keeps the module path's case and the "v" of Go module versions,
// as the purl spec's golang examples and Go tooling do.
func goPURL(name, version string) string {
	ns, n := "", name
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		ns, n = name[:i], name[i+1:]
	}
	if version != "" && version[0] >= '0' && version[0] <= '9' {
		version = "v" + version
	}
	return purl.PackageURL{Type: purl.TypeGolang, Namespace: ns, Name: n, Version: version}.String()
}
