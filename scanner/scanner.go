package scanner

import (
	"context"
	"fmt"
	"log/slog"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Version identifies the extraction logic. Bump it whenever the same image
// could give a different inventory, so stored inventories can be redone.
const Version = "portcullis-scanner/3" // 3: PHP, .NET and Rust lockfiles; secrets and known-bad files in layers and the image config

const (
	// defaultMaxFileSize bounds each file read into memory for an extractor
	// (package databases, jars, executables). Go and Rust binaries are the
	// large ones; a few reach 200 MB, so the default leaves room for them.
	defaultMaxFileSize = 256 << 20
	// defaultMaxLayerSize bounds the uncompressed bytes read from one layer,
	// so a decompression bomb costs bounded CPU time rather than forever.
	defaultMaxLayerSize = 64 << 30
	// defaultMaxEntries bounds the tar entries of one layer for the same
	// reason (millions of empty entries compress to almost nothing).
	defaultMaxEntries = 5_000_000
)

// Scanner extracts the package inventory of container images. It is safe
// for concurrent use: Scan keeps all its state on the stack of the call.
type Scanner struct {
	maxFileSize       int64
	maxLayerSize      int64
	maxEntries        int
	maxImageEntries   int
	maxReadBytes      int64
	maxPackages       int
	maxInventoryBytes int64
	maxPackageDBSize  int64
	maxMetadataSize   int64
	maxArchiveDepth   int
	maxArchiveEntries int
	maxArchiveBytes   int64
	log               *slog.Logger
	layerCache        LayerCache
	extractors        []*extractorSpec
	secretsMaxFile    int64
	secretsOff        bool
	inspectors        []FileInspector // the secrets inspector first, then WithFileInspector's
}

// Option configures a Scanner.
type Option func(*Scanner)

// positive sets *dst to n when n > 0: a zero or negative bound keeps the
// default rather than switching the bound off.
func positive[T int | int64](dst *T, n T) {
	if n > 0 {
		*dst = n
	}
}

// WithMaxFileSize bounds the size of each file read into memory for an
// extractor (package databases, jars, executables); larger files are
// skipped and logged. Default 256 MiB.
func WithMaxFileSize(n int64) Option {
	return func(s *Scanner) { positive(&s.maxFileSize, n) }
}

// WithMaxLayerSize bounds the uncompressed bytes read from one layer; a
// layer that expands beyond it fails the scan. Default 64 GiB.
func WithMaxLayerSize(n int64) Option {
	return func(s *Scanner) { positive(&s.maxLayerSize, n) }
}

// WithMaxEntries bounds the number of tar entries in one layer. Default five
// million.
func WithMaxEntries(n int) Option {
	return func(s *Scanner) { positive(&s.maxEntries, n) }
}

// WithMaxImageEntries bounds the tar entries of all layers of an image
// together. Default ten million.
func WithMaxImageEntries(n int) Option {
	return func(s *Scanner) { positive(&s.maxImageEntries, n) }
}

// WithMaxReadBytes bounds the bytes read into memory for extractors over
// the whole image (package databases, metadata, jars, executables; sparse
// files count at their full size). Default 16 GiB.
func WithMaxReadBytes(n int64) Option {
	return func(s *Scanner) { positive(&s.maxReadBytes, n) }
}

// WithMaxPackages bounds the packages found in one image. Default 50,000.
func WithMaxPackages(n int) Option {
	return func(s *Scanner) { positive(&s.maxPackages, n) }
}

// WithMaxInventoryBytes bounds the bytes of the packages' strings (names,
// versions, locations, purls) in one image. Default 32 MiB.
func WithMaxInventoryBytes(n int64) Option {
	return func(s *Scanner) { positive(&s.maxInventoryBytes, n) }
}

// WithMaxPackageDBSize bounds the size of an OS package database (dpkg
// status, apk installed, rpm database); a larger one fails the scan.
// Default 128 MiB.
func WithMaxPackageDBSize(n int64) Option {
	return func(s *Scanner) { positive(&s.maxPackageDBSize, n) }
}

// WithMaxMetadataSize bounds the size of a language package's metadata
// file (package.json, METADATA, gemspec); larger ones are skipped and
// logged. Default 8 MiB.
func WithMaxMetadataSize(n int64) Option {
	return func(s *Scanner) { positive(&s.maxMetadataSize, n) }
}

// WithMaxArchive bounds a Java archive (jar, war, ear) together with the
// archives nested in it: how deep they nest, how many entries they have in
// all, and how many bytes they open (the archive, every nested archive
// uncompressed, the manifests and pom files read). Past a bound the scan
// fails. Zero keeps a default: 8 deep, 500,000 entries, 384 MiB.
func WithMaxArchive(depth, entries int, bytes int64) Option {
	return func(s *Scanner) {
		if depth > 0 {
			s.maxArchiveDepth = depth
		}
		if entries > 0 {
			s.maxArchiveEntries = entries
		}
		if bytes > 0 {
			s.maxArchiveBytes = bytes
		}
	}
}

// WithLogger sets where skipped files and extractor failures are reported.
// Default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(s *Scanner) {
		if l != nil {
			s.log = l
		}
	}
}

// New returns a Scanner with the given options.
func New(opts ...Option) *Scanner {
	s := &Scanner{
		maxFileSize:       defaultMaxFileSize,
		maxLayerSize:      defaultMaxLayerSize,
		maxEntries:        defaultMaxEntries,
		maxImageEntries:   defaultMaxImageEntries,
		maxReadBytes:      defaultMaxReadBytes,
		maxPackages:       defaultMaxPackages,
		maxInventoryBytes: defaultMaxInventoryBytes,
		maxPackageDBSize:  defaultMaxPackageDBSize,
		maxMetadataSize:   defaultMaxMetadataSize,
		maxArchiveDepth:   defaultMaxArchiveDepth,
		maxArchiveEntries: defaultMaxArchiveEntries,
		maxArchiveBytes:   defaultMaxArchiveBytes,
		log:               slog.Default(),
		secretsMaxFile:    DefaultSecretsMaxFile,
	}
	for _, o := range opts {
		o(s)
	}
	if !s.secretsOff {
		s.inspectors = append([]FileInspector{&secretInspector{maxFile: s.secretsMaxFile}}, s.inspectors...)
	}
	s.extractors = newExtractors(s)
	return s
}

// Scan reads every layer of img once, in order, through layer.Compressed()
// (gzip, zstd or plain tar, recognised by their magic bytes), and returns
// the packages present in the final filesystem, each attributed to the
// layer that introduced it. Nothing is written to the host filesystem.
func (s *Scanner) Scan(ctx context.Context, img v1.Image) (*Inventory, error) {
	inv, _, err := s.scan(ctx, img)
	return inv, err
}

// scan is Scan that also returns what it remembered of the filesystem.
func (s *Scanner) scan(ctx context.Context, img v1.Image) (*Inventory, *fsState, error) {
	digest, err := img.Digest()
	if err != nil {
		return nil, nil, fmt.Errorf("image digest: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, nil, fmt.Errorf("layers of %s: %w", digest, err)
	}
	// Diff IDs come from the config: asking a layer for its DiffID may
	// decompress the whole blob (go-containerregistry's partial images do),
	// which would read it a second time.
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, nil, fmt.Errorf("config of %s: %w", digest, err)
	}
	var diffIDs []v1.Hash
	if cfg != nil && len(cfg.RootFS.DiffIDs) == len(layers) {
		diffIDs = cfg.RootFS.DiffIDs
	}
	inv := &Inventory{
		ImageDigest:    digest.String(),
		Layers:         make([]Layer, 0, len(layers)),
		Packages:       []Package{},
		ScannerVersion: Version,
	}
	for i, l := range layers {
		var diffID v1.Hash
		if diffIDs != nil {
			diffID = diffIDs[i]
		}
		meta, err := describeLayer(l, diffID)
		if err != nil {
			return nil, nil, fmt.Errorf("layer %d of %s: %w", i, digest, err)
		}
		inv.Layers = append(inv.Layers, meta)
	}
	// With a layer cache, the scan starts after the longest stack of lowest
	// layers some earlier scan already read: a new tag of a base image
	// costs only its own layers.
	for _, fi := range s.inspectors {
		if p, ok := fi.(Preparer); ok {
			if err := p.Prepare(ctx); err != nil {
				return nil, nil, fmt.Errorf("scan %s: %w: %w", digest, ErrCannotJudge, err)
			}
		}
	}
	start, st, budget := 0, newFSState(), &scanBudget{entries: s.maxImageEntries, readBytes: s.maxReadBytes}
	var keys []string
	if s.layerCache != nil {
		keys = s.layerStateKeys(inv.Layers)
		start, st, budget = s.restoreLayerState(ctx, keys)
	}
	for i := start; i < len(layers); i++ {
		if err := s.scanLayer(ctx, st, budget, i, inv.Layers[i].Digest, layers[i]); err != nil {
			return nil, nil, fmt.Errorf("layer %d (%s) of %s: %w", i, inv.Layers[i].Digest, digest, err)
		}
		if keys != nil {
			s.storeLayerState(ctx, keys[i], i+1, st, budget)
		}
	}
	inv.OS = detectOS(st)
	inv.Packages = st.packages(inv.OS, inv.Layers)
	s.configSecrets(cfg, inv.ImageDigest, st)
	inv.FileFindings = st.fileFindingsOf(inv.Layers)
	inv.Notes = st.notes
	return inv, st, nil
}

// describeLayer reads the layer's metadata; for registry and cached layers
// these come from the manifest, without reading the blob.
func describeLayer(l v1.Layer, diffID v1.Hash) (Layer, error) {
	d, err := l.Digest()
	if err != nil {
		return Layer{}, fmt.Errorf("digest: %w", err)
	}
	size, err := l.Size()
	if err != nil {
		return Layer{}, fmt.Errorf("size of %s: %w", d, err)
	}
	mt, err := l.MediaType()
	if err != nil {
		return Layer{}, fmt.Errorf("media type of %s: %w", d, err)
	}
	meta := Layer{Digest: d.String(), Size: size, MediaType: string(mt)}
	if diffID.Hex != "" {
		meta.DiffID = diffID.String()
	}
	return meta, nil
}
