package scanner

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// Whiteout markers, from the OCI image spec:
// https://github.com/opencontainers/image-spec/blob/main/layer.md#whiteouts
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// zstdMaxWindow bounds the memory a zstd frame can ask for. 128 MiB is the
// largest window the zstd CLI decodes without --long=31.
const zstdMaxWindow = 128 << 20

var (
	magicGzip = []byte{0x1f, 0x8b}
	magicZstd = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// errLayerTooLarge is returned when a layer expands past the configured bound.
var errLayerTooLarge = fmt.Errorf("%w: uncompressed layer exceeds the size limit (WithMaxLayerSize)", ErrLimitExceeded)

// ctxCheckEvery is how many tar entries the walker reads between looks at
// the context: a highly compressed layer of tiny entries hands out many
// thousands of them per read of the compressed stream (where ctxReader
// looks).
const ctxCheckEvery = 256

// scanLayer streams one layer through the tar walker and then applies its
// whiteouts to the state built from the layers below it.
func (s *Scanner) scanLayer(ctx context.Context, st *fsState, budget *scanBudget, index int, digest string, l v1.Layer) error {
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer rc.Close()
	w := &layerWalker{s: s, st: st, budget: budget, index: index, digest: digest, changes: newLayerChanges()}
	if err := w.walk(ctx, rc); err != nil {
		return err
	}
	// Read to the end even if the tar stream stopped early (end-of-archive
	// blocks, padding): a verifying reader checks the digest only at EOF, and
	// the proxy's cache keeps a blob only once it was read completely.
	if _, err := io.Copy(io.Discard, &ctxReader{ctx: ctx, r: rc}); err != nil {
		return fmt.Errorf("read to end: %w", err)
	}
	st.applyChanges(index, w.changes)
	st.pruneOSFiles()
	return nil
}

// decompress recognises the stream by its first bytes rather than trusting
// the media type: registries and archives mislabel layers often enough.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("read magic: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, magicGzip):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(magic, magicZstd):
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w", err)
		}
		return zr, zr.Close, nil
	default:
		return br, func() {}, nil
	}
}

// layerWalker reads the tar entries of one layer.
type layerWalker struct {
	s            *Scanner
	st           *fsState
	budget       *scanBudget
	index        int
	digest       string // compressed digest of the layer
	changes      *layerChanges
	osCandidates int // OS identification files kept as possible link targets
}

func (w *layerWalker) walk(ctx context.Context, compressed io.Reader) error {
	r, closeFn, err := decompress(&ctxReader{ctx: ctx, r: compressed})
	if err != nil {
		return err
	}
	defer closeFn()
	tr := tar.NewReader(&limitReader{r: r, left: w.s.maxLayerSize})
	for n := 0; ; n++ {
		if n%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("tar: %w", err)
		}
		if n >= w.s.maxEntries {
			return limitError(entryName(hdr.Name), "tar entries in the layer", int64(w.s.maxEntries), "WithMaxEntries")
		}
		if w.budget.entries <= 0 {
			return limitError(entryName(hdr.Name), "tar entries in the image", int64(w.s.maxImageEntries), "WithMaxImageEntries")
		}
		w.budget.entries--
		if err := w.entry(ctx, hdr, tr); err != nil {
			return err
		}
	}
}

func (w *layerWalker) entry(ctx context.Context, hdr *tar.Header, r io.Reader) error {
	p, ok := cleanPath(hdr.Name)
	if !ok {
		w.s.log.DebugContext(ctx, "skipping tar entry with an unusable name", "layer", w.index, "name", hdr.Name)
		return nil
	}
	if p == "" {
		return nil // the root directory itself
	}
	dir, base := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	// Whiteouts are kept only when they delete something remembered from a
	// lower layer (everything of the lower layers is in st already), so a
	// flood of them costs no memory.
	if base == whiteoutOpaque {
		if w.st.remembersBelow(dir) {
			w.changes.opaque[dir] = struct{}{}
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		// A bare ".wh." names nothing; anything else whites out its target.
		if name := strings.TrimPrefix(base, whiteoutPrefix); name != "" {
			if target := path.Join(dir, name); w.st.remembersBelow(target) {
				w.changes.gone[target] = struct{}{}
			}
		}
		return nil
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		w.st.replaceNonDir(p, w.index)
		return nil
	case tar.TypeSymlink:
		w.st.replace(p, w.index, w.changes)
		if wantSymlink(p) {
			target := strings.ReplaceAll(hdr.Linkname, "\x00", "")
			w.st.put(p, &pathEntry{layer: w.index, link: target}, nil)
		}
		return nil
	case tar.TypeReg, tar.TypeGNUSparse, '\x00': // '\x00' is a regular file in old tars
	default:
		// Hard links, devices, FIFOs: none holds a package database we can
		// read (a hard link's data is another entry's), but each still
		// replaces whatever a lower layer had at this path.
		w.st.replace(p, w.index, w.changes)
		return nil
	}

	// Files are inspected before anything else reads them: whatever
	// happens to the path later (replaced, whited out), the layer holds it.
	r, err := w.inspect(ctx, p, hdr, r)
	if err != nil {
		return err
	}
	old := w.st.replace(p, w.index, w.changes)
	switch {
	case osFiles[p]:
		return w.keepOSFile(ctx, p, hdr, r)
	case isOSFileCandidate(p):
		if w.osCandidates >= maxOSFileCandidates {
			w.s.log.DebugContext(ctx, "not keeping another possible OS identification file", "layer", w.index, "path", "/"+p)
			return nil
		}
		w.osCandidates++
		if err := w.keepOSFile(ctx, p, hdr, r); err != nil {
			return err
		}
		if _, ok := w.st.entries[p]; ok {
			w.st.osCandidates[p] = struct{}{}
		}
		return nil
	}
	return w.extract(ctx, p, hdr, r, old)
}

// keepOSFile remembers the content of an OS identification file.
func (w *layerWalker) keepOSFile(ctx context.Context, p string, hdr *tar.Header, r io.Reader) error {
	data, err := w.read(ctx, p, hdr, r, maxOSFileSize, nil)
	if err != nil || data == nil {
		return err
	}
	w.st.put(p, &pathEntry{layer: w.index, content: bytes.Clone(data)}, nil)
	return nil
}

// read reads a file, of which head was already read, into the scan's
// reusable buffer; it returns nil (and logs why) when the file is larger
// than limit, leaving the tar reader to skip it.
func (w *layerWalker) read(ctx context.Context, p string, hdr *tar.Header, r io.Reader, limit int64, head []byte) ([]byte, error) {
	if hdr.Size > limit {
		w.s.log.InfoContext(ctx, "skipping file larger than the limit", "layer", w.index, "path", "/"+p, "size", hdr.Size, "limit", limit)
		return nil, nil
	}
	if hdr.Size > w.budget.readBytes {
		return nil, limitError("/"+p, "bytes read into memory for the image", w.s.maxReadBytes, "WithMaxReadBytes")
	}
	w.budget.readBytes -= hdr.Size
	n := int(hdr.Size)
	if cap(w.budget.buf) < n {
		w.budget.buf = make([]byte, n)
	}
	buf := w.budget.buf[:n]
	copy(buf, head)
	if _, err := io.ReadFull(r, buf[len(head):]); err != nil {
		return nil, fmt.Errorf("read file: %w", err)
	}
	return buf, nil
}

// cleanPath turns a tar entry name into a slash-separated path relative to
// the image root, resolving "." and ".." as if the root were "/" so no name
// can point above it (the same rule container runtimes apply when they
// unpack). Names with NUL bytes are refused.
func cleanPath(name string) (string, bool) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", false
	}
	return strings.TrimPrefix(path.Clean("/"+name), "/"), true
}

// limitReader fails, instead of returning EOF, once more than left bytes
// were read: a truncated layer must not look like a complete one.
type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// Exactly at the limit is fine if the stream ends here.
		var one [1]byte
		if n, err := l.r.Read(one[:]); n == 0 && err != nil {
			return 0, err
		}
		return 0, errLayerTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// ctxReader stops a long read (a multi-GB layer, a slow upstream) as soon as
// the scan is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
