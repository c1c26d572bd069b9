package scanner

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

// LayerCache keeps what a scan remembered of an image's filesystem after a
// stack of layers, so the next image built on the same layers starts from
// there instead of reading them again. It is shared through the store, so
// every replica reuses what any one scanned. A cache that fails only costs
// time: the scan reads the layers as if it were empty.
type LayerCache interface {
	// LayerState returns the state stored under key; ok is false if there
	// is none.
	LayerState(ctx context.Context, key string) (state []byte, ok bool, err error)
	// PutLayerState stores state under key. States are never larger than
	// MaxLayerStateSize; the cache may drop any of them at any time.
	PutLayerState(ctx context.Context, key string, state []byte) error
}

// MaxLayerStateSize bounds one stored layer state. What a scan remembers is
// the packages found so far and a few small files (a full Debian image's
// 3,000 dpkg packages take about 1 MB); a stack remembering more is scanned
// again the next time rather than stored.
const MaxLayerStateSize = 8 << 20

// WithLayerCache makes scans start from the state stored for the longest
// known stack of their lowest layers and store the state after each layer
// they read. Nil (the default) reads every layer of every image.
func WithLayerCache(c LayerCache) Option {
	return func(s *Scanner) { s.layerCache = c }
}

// layerStateKeys returns, for each layer i, the key of the state after
// layers 0..i. The state depends on every layer below (whiteouts, replaced
// package databases), so the key names the whole stack, not one layer: the
// digests of the compressed layers, which the proxy verifies against the
// bytes (diff IDs come from the config, which nobody checks against the
// layers, so an image could claim another's diff IDs and hide its own
// content). The scanner version and every option that changes what a scan
// finds or where it stops are part of the key too.
func (s *Scanner) layerStateKeys(layers []Layer) []string {
	h := sha256.New()
	fmt.Fprintf(h, "portcullis layer state\n%s\n%d %d %d %d %d %d %d %d %d %d %d %d\n", Version,
		s.maxFileSize, s.maxLayerSize, s.maxEntries, s.maxImageEntries, s.maxReadBytes, s.maxPackages,
		s.maxInventoryBytes, s.maxPackageDBSize, s.maxMetadataSize, s.maxArchiveDepth, s.maxArchiveEntries, s.maxArchiveBytes)
	for _, fi := range s.inspectors {
		fmt.Fprintf(h, "inspector %q\n", fi.CacheKey())
	}
	keys := make([]string, len(layers))
	for i, l := range layers {
		fmt.Fprintf(h, "%s\n", l.Digest)
		keys[i] = "sha256:" + hex.EncodeToString(h.Sum(nil))
	}
	return keys
}

// layerState is the stored form of an fsState after a stack of layers,
// with what the scan used of its image-wide budget so far. The directories
// above the entries are not stored: put rebuilds those that matter (the
// ones a full scan still remembers above deleted entries delete nothing).
type layerState struct {
	Key          string       `json:"key"` // the key it was stored under, checked on load
	Layers       int          `json:"layers"`
	Entries      []stateEntry `json:"entries"`
	OSCandidates []string     `json:"osCandidates,omitempty"`
	TarEntries   int          `json:"tarEntries"` // tar entries read
	ReadBytes    int64        `json:"readBytes"`  // bytes read into memory for extractors
	// FileFindings are the inspectors' findings in the files of these
	// layers (whiteouts do not remove them), FileFindingsFull whether
	// their bound was reached, Notes the inventory's notes so far.
	FileFindings     []stateFileFinding `json:"fileFindings,omitempty"`
	FileFindingsFull bool               `json:"fileFindingsFull,omitempty"`
	Notes            []string           `json:"notes,omitempty"`
}

type stateFileFinding struct {
	Finding vulndb.Finding `json:"finding"`
	Layer   int            `json:"layer"`
}

type stateEntry struct {
	Path       string       `json:"path"`
	Layer      int          `json:"layer"`
	Packages   []stateFound `json:"packages,omitempty"`
	HasContent bool         `json:"hasContent,omitempty"`
	Content    []byte       `json:"content,omitempty"`
	Link       string       `json:"link,omitempty"`
}

type stateFound struct {
	Package Package `json:"package"`
	Layer   int     `json:"layer"`
	OS      bool    `json:"os,omitempty"`
	Arch    string  `json:"arch,omitempty"`
	Epoch   int     `json:"epoch,omitempty"`
}

// encodeLayerState serialises st after layers layers; used is what the
// scan consumed of its budget.
func (s *Scanner) encodeLayerState(key string, layers int, st *fsState, budget *scanBudget) ([]byte, error) {
	ls := layerState{
		Key: key, Layers: layers,
		Entries:    make([]stateEntry, 0, len(st.entries)),
		TarEntries: s.maxImageEntries - budget.entries,
		ReadBytes:  s.maxReadBytes - budget.readBytes,
	}
	for p, e := range st.entries {
		se := stateEntry{Path: p, Layer: e.layer, HasContent: e.content != nil, Content: e.content, Link: e.link}
		for _, f := range e.pkgs {
			sf := stateFound{Package: f.pkg, Layer: f.layer}
			if f.os != nil {
				sf.OS, sf.Arch, sf.Epoch = true, f.os.arch, f.os.epoch
			}
			se.Packages = append(se.Packages, sf)
		}
		ls.Entries = append(ls.Entries, se)
	}
	for p := range st.osCandidates {
		ls.OSCandidates = append(ls.OSCandidates, p)
	}
	for _, ff := range st.fileFindings {
		ls.FileFindings = append(ls.FileFindings, stateFileFinding{Finding: ff.finding, Layer: ff.layer})
	}
	ls.FileFindingsFull, ls.Notes = st.fileFindingsFull, st.notes
	// Sorted, so the same state always encodes to the same bytes.
	slices.SortFunc(ls.Entries, func(a, b stateEntry) int { return cmp.Compare(a.Path, b.Path) })
	slices.Sort(ls.OSCandidates)
	return json.Marshal(ls)
}

// errBadLayerState is wrapped by decodeLayerState's errors.
var errBadLayerState = errors.New("unusable stored layer state")

// decodeLayerState rebuilds the fsState and budget stored under key for a
// stack of layers layers. The bytes come from a shared store, so they are
// checked as strictly as a layer would be: anything that a scan of those
// layers could not have produced makes the state unusable.
func (s *Scanner) decodeLayerState(key string, layers int, data []byte) (*fsState, *scanBudget, error) {
	if len(data) > MaxLayerStateSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, more than %d", errBadLayerState, len(data), MaxLayerStateSize)
	}
	var ls layerState
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ls); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errBadLayerState, err)
	}
	if ls.Key != key || ls.Layers != layers {
		return nil, nil, fmt.Errorf("%w: stored for %s after %d layers, wanted %s after %d", errBadLayerState, ls.Key, ls.Layers, key, layers)
	}
	if ls.TarEntries < 0 || ls.TarEntries > s.maxImageEntries || ls.ReadBytes < 0 || ls.ReadBytes > s.maxReadBytes {
		return nil, nil, fmt.Errorf("%w: budget used (%d entries, %d bytes) out of range", errBadLayerState, ls.TarEntries, ls.ReadBytes)
	}
	validPath := func(p string) bool { c, ok := cleanPath(p); return ok && c == p && p != "" }
	st := newFSState()
	for _, se := range ls.Entries {
		if !validPath(se.Path) || se.Layer < 0 || se.Layer >= layers {
			return nil, nil, fmt.Errorf("%w: entry %q of layer %d", errBadLayerState, entryName(se.Path), se.Layer)
		}
		if _, dup := st.entries[se.Path]; dup {
			return nil, nil, fmt.Errorf("%w: %s twice", errBadLayerState, entryName(se.Path))
		}
		e := &pathEntry{layer: se.Layer, link: se.Link}
		if se.HasContent {
			e.content = se.Content
			if e.content == nil {
				e.content = []byte{}
			}
		}
		for _, sf := range se.Packages {
			if sf.Layer < 0 || sf.Layer > se.Layer {
				return nil, nil, fmt.Errorf("%w: package %q of layer %d in a file of layer %d", errBadLayerState, sf.Package.Name, sf.Layer, se.Layer)
			}
			f := found{pkg: sf.Package, layer: sf.Layer}
			if sf.OS {
				f.os = &osInfo{arch: sf.Arch, epoch: sf.Epoch}
			}
			e.pkgs = append(e.pkgs, f)
		}
		st.put(se.Path, e, nil)
	}
	for _, p := range ls.OSCandidates {
		if _, ok := st.entries[p]; !ok {
			return nil, nil, fmt.Errorf("%w: OS file candidate %s not remembered", errBadLayerState, entryName(p))
		}
		st.osCandidates[p] = struct{}{}
	}
	if len(ls.FileFindings) > maxFileFindings || len(ls.Notes) > maxInventoryNotes {
		return nil, nil, fmt.Errorf("%w: %d findings in files, %d notes past the bounds", errBadLayerState, len(ls.FileFindings), len(ls.Notes))
	}
	for _, sf := range ls.FileFindings {
		if sf.Layer < 0 || sf.Layer >= layers || sf.Finding.Kind == "" || sf.Finding.Layer != "" {
			return nil, nil, fmt.Errorf("%w: finding %q in files of layer %d", errBadLayerState, sf.Finding.ID, sf.Layer)
		}
		st.fileFindings = append(st.fileFindings, fileFinding{finding: sf.Finding, layer: sf.Layer})
	}
	st.fileFindingsFull, st.notes = ls.FileFindingsFull, ls.Notes
	if st.packageCount > s.maxPackages || st.packageBytes > s.maxInventoryBytes {
		return nil, nil, fmt.Errorf("%w: %d packages, %d bytes past the bounds", errBadLayerState, st.packageCount, st.packageBytes)
	}
	budget := &scanBudget{entries: s.maxImageEntries - ls.TarEntries, readBytes: s.maxReadBytes - ls.ReadBytes}
	return st, budget, nil
}

// restoreLayerState finds the longest stack of the image's lowest layers
// with a stored state and returns it with how many layers it covers (zero,
// with a fresh state, when none is known or usable).
func (s *Scanner) restoreLayerState(ctx context.Context, keys []string) (int, *fsState, *scanBudget) {
	for n := len(keys); n > 0; n-- {
		data, ok, err := s.layerCache.LayerState(ctx, keys[n-1])
		if err != nil {
			s.log.WarnContext(ctx, "layer cache: reading a stored state failed; scanning the layers", "key", keys[n-1], "err", err)
			break
		}
		if !ok {
			continue
		}
		st, budget, err := s.decodeLayerState(keys[n-1], n, data)
		if err != nil {
			s.log.WarnContext(ctx, "layer cache: ignoring a stored state", "key", keys[n-1], "err", err)
			continue
		}
		return n, st, budget
	}
	return 0, newFSState(), &scanBudget{entries: s.maxImageEntries, readBytes: s.maxReadBytes}
}

// storeLayerState stores the state after layers layers under key, unless
// it is larger than MaxLayerStateSize.
func (s *Scanner) storeLayerState(ctx context.Context, key string, layers int, st *fsState, budget *scanBudget) {
	data, err := s.encodeLayerState(key, layers, st, budget)
	if err != nil {
		s.log.WarnContext(ctx, "layer cache: encoding a state failed", "key", key, "err", err)
		return
	}
	if len(data) > MaxLayerStateSize {
		s.log.DebugContext(ctx, "layer cache: state too large to store", "key", key, "bytes", len(data))
		return
	}
	if err := s.layerCache.PutLayerState(ctx, key, data); err != nil {
		s.log.WarnContext(ctx, "layer cache: storing a state failed", "key", key, "err", err)
	}
}

// LayerStateKey returns the key of the state after all of img's layers,
// for tools and benchmarks that look at what is stored.
func (s *Scanner) LayerStateKey(img v1.Image) string {
	layers, err := img.Layers()
	if err != nil || len(layers) == 0 {
		return ""
	}
	metas := make([]Layer, len(layers))
	for i, l := range layers {
		if metas[i], err = describeLayer(l, v1.Hash{}); err != nil {
			return ""
		}
	}
	keys := s.layerStateKeys(metas)
	return keys[len(keys)-1]
}
