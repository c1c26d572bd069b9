package vulndb

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ImportStats counts what an Import or Update did.
type ImportStats struct {
	Records    int            // records read and stored (new, changed or unchanged)
	Skipped    int            // records refused as malformed; Problems says why
	Ecosystems map[string]int // records read per ecosystem, with release ("Alpine:v3.16")
	Removed    int            // records withdrawn, or gone from an updated source
	Written    int            // records whose content was written: new or changed (Removed not included)
	Unchanged  int            // Update: sources that answered 304 Not Modified
	Problems   []string       // the first maxProblems reasons for Skipped, each naming its file
	Signatures int            // ClamAV hash signatures in the .hsb/.hdb files imported
}

// maxProblems bounds ImportStats.Problems: an import of a broken archive
// should say what is wrong, not repeat it 100,000 times.
const maxProblems = 100

// maxRecordSize bounds one record read into memory. The largest records on
// osv.dev (kernel CVEs listing every version) are a few MiB.
const maxRecordSize = 32 << 20

// Import reads OSV records from paths — directories (every *.json and *.zip
// below them), single JSON files holding one record or an array of records,
// and osv.dev all.zip archives — and ClamAV hash signature files (*.hsb,
// *.hdb; see sigparse.go, a malformed line is an error) and stores them
// all or not at all: an
// error or a cancelled ctx leaves the database as it was. A record with the
// id of a stored one replaces it. Malformed records are skipped and counted;
// a missing path or an unreadable archive is an error naming the file.
// Records are streamed: memory holds a bounded batch, whatever the input's
// size (see importer). progress, if not nil, gets a progress line
// rewritten in place ("\r").
func (db *DB) Import(ctx context.Context, paths []string, progress io.Writer) (ImportStats, error) {
	if len(paths) == 0 {
		return ImportStats{}, errors.New("import vulnerability records: no paths given")
	}
	files, err := expandPaths(paths)
	if err != nil {
		return ImportStats{}, err
	}
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	pl := newProgress(progress)
	im := newImporter(ctx, pl)
	w := db.newBuilder(im)
	defer w.discard()
	for _, f := range files {
		if err := im.importFile(f); err != nil {
			pl.abort()
			return ImportStats{}, err
		}
	}
	if err := db.commit(w, pl, "import vulnerability records", nil); err != nil {
		return ImportStats{}, err
	}
	pl.done("imported %d records, skipped %d", im.stats.Records, im.stats.Skipped)
	return im.stats, nil
}

// expandPaths turns the arguments into the list of files to read, failing
// before anything is imported if one is missing.
func expandPaths(paths []string) ([]string, error) {
	var files []string
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("import vulnerability records from %s: %w", p, err)
		}
		if !info.IsDir() {
			files = append(files, p)
			continue
		}
		// WalkDir does not descend into a root that is a symlink.
		root, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil, fmt.Errorf("import vulnerability records from %s: %w", p, err)
		}
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			ext := strings.ToLower(filepath.Ext(path))
			if d.Type().IsRegular() && (ext == ".json" || ext == ".zip" || signatureKindOf(path) != 0) {
				files = append(files, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("import vulnerability records: list %s: %w", p, err)
		}
	}
	return files, nil
}

// importFile reads one file, deciding by its first bytes whether it is a
// zip archive or JSON, so that a misnamed file still imports.
func (im *importer) importFile(path string) error {
	if kind := signatureKindOf(path); kind != 0 {
		return im.importSignatures(path, kind)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("import vulnerability records from %s: %w", path, err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(4)
	if bytes.Equal(head, []byte("PK\x03\x04")) || bytes.Equal(head, []byte("PK\x05\x06")) {
		return im.importZip(path, nil, nil)
	}
	return im.importJSON(path, br)
}

// importZip reads every *.json entry of an archive laid out like osv.dev's
// all.zip (one record per entry). sums, if not nil, has the sha256 of each
// entry's content by its index in the archive (verifyArchive computed
// them): an entry stored from the same bytes is not read again. fps has
// each entry's fingerprint (zipFingerprint), stored with its record.
func (im *importer) importZip(path string, sums, fps [][32]byte) error {
	defer func() { im.zip = [32]byte{} }()
	zr, err := openZip(path)
	if err != nil {
		return fmt.Errorf("import vulnerability records: open zip archive %s: %w", path, err)
	}
	defer zr.Close()
	for i, zf := range zr.File {
		if zf.FileInfo().IsDir() || !strings.EqualFold(filepath.Ext(zf.Name), ".json") {
			continue
		}
		hint := recordIDHint(zf.Name)
		im.zip = [32]byte{}
		if i < len(fps) {
			im.zip = fps[i]
		}
		if i < len(sums) {
			done, err := im.same(hint, sums[i])
			if err != nil {
				return err
			}
			if done {
				continue
			}
		}
		name := path + ":" + zf.Name
		data, err := readZipEntry(zf)
		if err != nil {
			im.skip(name, err)
			continue
		}
		if err := im.add(name, hint, data); err != nil {
			return err
		}
	}
	return nil
}

// zipFile is an open archive read through a read-ahead window: entries are
// read in file order, mostly a few hundred bytes each, and reading each
// straight from the file took two system calls per record.
type zipFile struct {
	*zip.Reader
	f *os.File
}

func (z *zipFile) Close() error { return z.f.Close() }

func openZip(path string) (*zipFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	zr, err := zip.NewReader(&readAhead{r: f, buf: make([]byte, 0, readAheadSize)}, info.Size())
	if err != nil {
		f.Close()
		return nil, err
	}
	return &zipFile{Reader: zr, f: f}, nil
}

// readAheadSize is the window readAhead keeps.
const readAheadSize = 1 << 20

// readAhead is an io.ReaderAt that serves reads from a window of the file
// it last filled, refilling it from the offset asked for on a miss. Not
// safe for concurrent use: one archive is read by one goroutine.
type readAhead struct {
	r   io.ReaderAt
	off int64 // of buf[0] in the file
	buf []byte
}

func (ra *readAhead) ReadAt(p []byte, off int64) (int, error) {
	if len(p) > cap(ra.buf) {
		return ra.r.ReadAt(p, off)
	}
	if off < ra.off || off+int64(len(p)) > ra.off+int64(len(ra.buf)) {
		n, err := ra.r.ReadAt(ra.buf[:cap(ra.buf)], off)
		ra.off, ra.buf = off, ra.buf[:n]
		if n < len(p) {
			copy(p, ra.buf)
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
	}
	return copy(p, ra.buf[off-ra.off:]), nil
}

func readZipEntry(zf *zip.File) ([]byte, error) {
	if zf.UncompressedSize64 > maxRecordSize {
		return nil, fmt.Errorf("record is %d bytes, more than %d", zf.UncompressedSize64, maxRecordSize)
	}
	rc, err := zf.Open()
	if err != nil {
		return nil, fmt.Errorf("open archive entry: %w", err)
	}
	defer rc.Close()
	// The header's size can lie (a zip bomb): read at most the limit.
	data, err := io.ReadAll(io.LimitReader(rc, maxRecordSize+1))
	if err != nil {
		return nil, fmt.Errorf("read archive entry: %w", err)
	}
	if len(data) > maxRecordSize {
		return nil, fmt.Errorf("record is more than %d bytes", maxRecordSize)
	}
	return data, nil
}

// importJSON reads a file holding one record, or a JSON array of records
// (decoded one element at a time, so a large array needs no more memory
// than its largest record).
func (im *importer) importJSON(path string, br *bufio.Reader) error {
	first, err := firstNonSpace(br)
	if err != nil {
		im.skip(path, errors.New("empty file"))
		return nil
	}
	if first != '[' {
		data, err := io.ReadAll(io.LimitReader(br, maxRecordSize+1))
		switch {
		case err != nil:
			return fmt.Errorf("import vulnerability records: read %s: %w", path, err)
		case len(data) > maxRecordSize:
			im.skip(path, fmt.Errorf("record is more than %d bytes", maxRecordSize))
			return nil
		}
		return im.add(path, recordIDHint(path), data)
	}
	dec := json.NewDecoder(br)
	if _, err := dec.Token(); err != nil {
		im.skip(path, fmt.Errorf("invalid JSON array: %w", err))
		return nil
	}
	for i := 0; dec.More(); i++ {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			// The decoder cannot resynchronise after a syntax error:
			// the rest of the file is lost, and said so.
			im.skip(fmt.Sprintf("%s[%d]", path, i), fmt.Errorf("invalid JSON, rest of the file not read: %w", err))
			return nil
		}
		if err := im.add(fmt.Sprintf("%s[%d]", path, i), "", raw); err != nil {
			return err
		}
	}
	return nil
}

// recordIDHint is the id a record's file name suggests (osv.dev names each
// record <id>.json). It only says which stored record to compare the bytes
// with; the id in the bytes is what counts.
func recordIDHint(name string) string {
	base := filepath.Base(filepath.FromSlash(name))
	if ext := filepath.Ext(base); strings.EqualFold(ext, ".json") {
		return strings.TrimSuffix(base, ext)
	}
	return ""
}

// firstNonSpace peeks past leading white space and returns the first byte
// without consuming it.
func firstNonSpace(br *bufio.Reader) (byte, error) {
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0, err
		}
		if b != ' ' && b != '\t' && b != '\n' && b != '\r' {
			return b, br.UnreadByte()
		}
	}
}

// commit writes the last batch and the status it leads to, and puts a
// database built beside in force: Import and Update end the same way.
// edit, if not nil, changes the status read in the last transaction
// (Update records its sources there, so that a concurrent writer's state
// is not overwritten). what names the operation in the error.
func (db *DB) commit(w *builder, pl *progress, what string, edit func(*storedStatus)) error {
	if err := w.finish(edit); err != nil {
		pl.abort()
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// finishImport recomputes the content hash and the counts, and moves the
// build time only when the content changed. edit, if not nil, is applied
// to the status first.
func finishImport(tx *bolt.Tx, changed bool, edit func(*storedStatus)) error {
	st, err := readStatus(tx)
	if err != nil {
		return err
	}
	if edit != nil {
		edit(&st)
	}
	if changed || st.Hash == "" {
		h := sha256.New()
		h.Write([]byte(formatVersion + "\x00"))
		st.Records, st.Ecosystems = 0, map[string]int{}
		zero := []byte{0}
		err := tx.Bucket([]byte(bucketRecords)).ForEach(func(id, v []byte) error {
			// Read in place: this walks every record after each change.
			m, err := viewRecordMeta(v)
			if err != nil {
				return fmt.Errorf("read stored record %s: %w", id, err)
			}
			h.Write(id)
			h.Write(zero)
			h.Write(m.hash[:])
			st.Records++
			m.countEcosystems(st.Ecosystems)
			return nil
		})
		if err != nil {
			return err
		}
		if st.Signatures, err = hashSignatureSources(tx, h); err != nil {
			return err
		}
		switch hash := hex.EncodeToString(h.Sum(nil)); {
		case st.Records == 0 && st.Signatures == 0:
			// No records is no database, whatever was attempted: an
			// update that downloaded nothing must not look like one
			// (matching would answer "clean" for everything).
			st.Hash, st.BuiltAt = "", time.Time{}
		case hash != st.Hash:
			st.Hash, st.BuiltAt = hash, time.Now().UTC().Truncate(time.Second)
		}
	}
	return writeStatus(tx, st)
}

// progress rewrites one line on a terminal, at most a few times a second.
type progress struct {
	w    io.Writer
	last time.Time
	used bool
}

func newProgress(w io.Writer) *progress { return &progress{w: w} }

func (p *progress) update(format string, args ...any) {
	if p == nil || p.w == nil || time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last, p.used = time.Now(), true
	fmt.Fprintf(p.w, "\r\x1b[K"+format, args...)
}

// abort ends a progress line that was drawn, leaving the error to the
// caller.
func (p *progress) abort() {
	if p != nil && p.w != nil && p.used {
		fmt.Fprintln(p.w)
	}
	p.used = false
}

// done ends the line with a final message.
func (p *progress) done(format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	fmt.Fprintf(p.w, "\r\x1b[K"+format+"\n", args...)
	p.used, p.last = false, time.Time{}
}

// sortSources orders sources for Status by ecosystem, then URL.
func sortSources(s []SourceStatus) {
	slices.SortFunc(s, func(a, b SourceStatus) int {
		if c := strings.Compare(a.Ecosystem, b.Ecosystem); c != 0 {
			return c
		}
		return strings.Compare(a.URL, b.URL)
	})
}
