package scanner

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

// FileInspector looks at the regular files of every layer while the walk
// streams it, for findings in files rather than in packages (secrets
// today; hash signatures can use the same hook). Each layer's findings are
// stored with its state in the layer cache, so a layer scanned once is not
// read again for them either.
//
// An inspector sees every regular file of every layer, including files a
// later layer deletes or replaces (they are still in the image: the lower
// layer is pulled by everyone).
type FileInspector interface {
	// CacheKey names the inspector and every setting that changes what it
	// finds; it is part of the layer cache's key.
	CacheKey() string
	// Wants decides from the file's path and size alone whether to read
	// it; the walker never hands an inspector a file larger than MaxSize.
	Wants(file InspectedFile) bool
	// MaxSize is the largest file the inspector reads.
	MaxSize() int64
	// Inspect reads the file from r (exactly file.Size bytes) and returns
	// its findings, with Path, Line and Fingerprint set; the walker sets
	// Layer. truncated reports that the inspector dropped findings past
	// a bound of its own.
	Inspect(ctx context.Context, file InspectedFile, r io.Reader) (findings []vulndb.Finding, truncated bool, err error)
}

// ErrCannotJudge, wrapped in an Inspect error, fails the scan: the
// inspector could not look (clamd unreachable or answering an error, the
// signature database unreadable), and a scan that went on would pass what
// it would have found. Any other Inspect error concerns one file and is
// logged, as for the extractors.
var ErrCannotJudge = errors.New("file inspector cannot judge")

// Preparer is a FileInspector that must be made ready before each scan
// (reload what it matches against, reach the engine it asks); its CacheKey
// may change then. An error fails the scan, for the same reason as
// ErrCannotJudge.
type Preparer interface {
	Prepare(ctx context.Context) error
}

// InspectedFile is what an inspector knows about a file before reading it.
type InspectedFile struct {
	Path       string // absolute path in the image: "/app/.env"
	Size       int64
	Layer      string // compressed digest of the layer holding it
	LayerIndex int
}

// WithFileInspector adds an inspector to the walk.
func WithFileInspector(fi FileInspector) Option {
	return func(s *Scanner) {
		if fi != nil {
			s.inspectors = append(s.inspectors, fi)
		}
	}
}

// maxFileFindings bounds the findings in files of one image (secrets and
// the like): past it the rest are dropped and the inventory says so.
const maxFileFindings = 1000

// maxInventoryNotes bounds the notes of one inventory.
const maxInventoryNotes = 20

// inspect runs the inspectors that want the regular file at p. A file only
// one inspector reads is streamed to it from the tar; otherwise it is read
// once into a reusable buffer (no larger than the largest MaxSize of the
// inspectors that want it), each inspector reads it from there, and the
// returned reader gives the same bytes to the rest of the walk.
func (w *layerWalker) inspect(ctx context.Context, p string, hdr *tar.Header, r io.Reader) (io.Reader, error) {
	if len(w.s.inspectors) == 0 || w.st.fileFindingsFull {
		return r, nil
	}
	file := InspectedFile{Path: "/" + p, Size: hdr.Size, Layer: w.digest, LayerIndex: w.index}
	var wanting []FileInspector
	for _, fi := range w.s.inspectors {
		if hdr.Size <= fi.MaxSize() && fi.Wants(file) {
			wanting = append(wanting, fi)
		}
	}
	if len(wanting) == 0 {
		return r, nil
	}
	if len(wanting) == 1 && !w.walkReads(p, hdr) {
		// Nobody else reads the file: the inspector streams it from the
		// tar, so a large file costs no buffer of its size.
		return r, w.runInspector(ctx, wanting[0], file, io.LimitReader(r, hdr.Size))
	}
	n := int(hdr.Size)
	if cap(w.budget.inspectBuf) < n {
		w.budget.inspectBuf = make([]byte, n)
	}
	data := w.budget.inspectBuf[:n]
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, fmt.Errorf("read file: %w", err)
	}
	for _, fi := range wanting {
		if err := w.runInspector(ctx, fi, file, bytes.NewReader(data)); err != nil {
			return nil, err
		}
		if w.st.fileFindingsFull {
			break // the image's note says why the rest is missing
		}
	}
	return bytes.NewReader(data), nil
}

// runInspector runs one inspector on a file and keeps what it found. It
// returns only the errors that fail the scan (ErrCannotJudge).
func (w *layerWalker) runInspector(ctx context.Context, fi FileInspector, file InspectedFile, r io.Reader) error {
	found, truncated, err := fi.Inspect(ctx, file, r)
	if errors.Is(err, ErrCannotJudge) {
		return fmt.Errorf("inspect %s: %w", file.Path, err)
	}
	if err != nil {
		// One unreadable file must not fail the scan, as for the
		// extractors; the findings it gave are kept.
		w.s.log.WarnContext(ctx, "file inspector failed", "inspector", fi.CacheKey(), "layer", w.index, "path", file.Path, "error", err)
	}
	w.st.addFileFindings(w.index, found)
	if truncated && !w.st.fileFindingsFull {
		w.st.addNote(fmt.Sprintf("more findings in %s (layer %s) than reported: only the first %d", file.Path, file.Layer, len(found)))
	}
	return nil
}

// walkReads reports whether the rest of the walk reads the file at p (an
// OS identification file, or one an extractor wants).
func (w *layerWalker) walkReads(p string, hdr *tar.Header) bool {
	if osFiles[p] || isOSFileCandidate(p) {
		return true
	}
	info := hdr.FileInfo()
	for _, s := range w.s.extractors {
		if s.wants(p, info) {
			return true
		}
	}
	return false
}

// addFileFindings keeps the findings of a file of layer index, up to
// maxFileFindings for the image; past that it keeps one note.
func (st *fsState) addFileFindings(index int, found []vulndb.Finding) {
	for _, f := range found {
		if len(st.fileFindings) >= maxFileFindings {
			st.fileFindingsFull = true
			st.addNote(fmt.Sprintf("more than %d findings in files; the rest of the image's are not reported", maxFileFindings))
			return
		}
		f.Layer = ""
		st.fileFindings = append(st.fileFindings, fileFinding{finding: f, layer: index})
	}
}

// addNote adds a note for the inventory, up to maxInventoryNotes.
func (st *fsState) addNote(note string) {
	if len(st.notes) < maxInventoryNotes {
		st.notes = append(st.notes, note)
	}
}

// fileFinding is a finding in a file of layer layer.
type fileFinding struct {
	finding vulndb.Finding
	layer   int
}

// fileFindingsOf returns the findings in files with their layers' digests.
func (st *fsState) fileFindingsOf(layers []Layer) []vulndb.Finding {
	out := make([]vulndb.Finding, 0, len(st.fileFindings))
	for _, ff := range st.fileFindings {
		f := ff.finding
		if ff.layer >= 0 && ff.layer < len(layers) {
			f.Layer = layers[ff.layer].Digest
		}
		out = append(out, f)
	}
	return out
}
