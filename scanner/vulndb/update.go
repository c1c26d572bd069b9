package vulndb

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Source is one archive of OSV records that Update downloads.
type Source struct {
	Ecosystem string `json:"ecosystem"`
	URL       string `json:"url"`
}

// osvBucket is where osv.dev publishes one all.zip per ecosystem
// (https://google.github.io/osv.dev/data/#data-dumps).
const osvBucket = "https://osv-vulnerabilities.storage.googleapis.com/"

// DefaultSources lists osv.dev's archives for every ecosystem we match:
// the OS distributions whose package databases the scanner reads and the
// language ecosystems whose version order we know. "Red Hat" is left out:
// its records name products ("Red Hat:enterprise_linux:9::appstream"), not
// the release an image's os-release gives.
func DefaultSources() []Source { return SourcesAt(osvBucket) }

// SourcesAt lists the archives of DefaultSources under base instead of
// osv.dev's bucket: a mirror with the same layout (<ecosystem>/all.zip).
func SourcesAt(base string) []Source {
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	var out []Source
	for _, eco := range []string{
		"AlmaLinux", "Alpine", "Debian", "Rocky Linux", "Ubuntu",
		"crates.io", "Go", "Maven", "npm", "NuGet", "Packagist", "PyPI", "RubyGems",
	} {
		out = append(out, Source{Ecosystem: eco, URL: base + url.PathEscape(eco) + "/all.zip"})
	}
	return out
}

// downloadPattern names the temporary files of Update in the database
// directory.
const downloadPattern = "download-*.zip"

// download is the outcome of one conditional GET.
type download struct {
	src          Source
	file         string // temporary file with the archive; "" if none
	etag         string
	lastModified string
	notModified  bool
	err          error
	sums         [][32]byte // sha256 of each entry's content, by index
	fps          [][32]byte // fingerprint of each entry, by index (zipFingerprint)
}

// defaultFetchLimit bounds the archives Update downloads at once: enough
// to overlap osv.dev's latency and the verification of each archive,
// few enough not to crowd the pull path's bandwidth.
const defaultFetchLimit = 4

// Update downloads the sources, at most fetchLimit at once, each with a
// conditional request (If-None-Match / If-Modified-Since from the last
// successful download), streams changed archives to temporary files and
// verifies them whole (every entry's checksum), then imports them all or
// not at all: only changed records are rewritten. An updated source
// replaces what it brought before: records it no longer lists are
// removed. A source that fails — unreachable, an error status, an archive
// that does not verify — keeps what it brought before; it is recorded in
// Status and its error returned (joined with the others'), but does not
// stop the others. client nil means http.DefaultClient.
func (db *DB) Update(ctx context.Context, sources []Source, client *http.Client, progress io.Writer) (ImportStats, error) {
	if client == nil {
		client = http.DefaultClient
	}
	db.writeMu.Lock()
	defer db.writeMu.Unlock()
	// The stored status already has the sources by URL.
	prev, err := db.readStoredStatus()
	if err != nil {
		return ImportStats{}, err
	}
	pl := newProgress(progress)
	downloads := db.fetchAll(ctx, client, sources, prev.Sources, pl)
	defer func() {
		for _, d := range downloads {
			if d.file != "" {
				os.Remove(d.file)
			}
		}
	}()
	if err := ctx.Err(); err != nil {
		return ImportStats{}, fmt.Errorf("update vulnerability database: %w", err)
	}
	var errs []error
	for _, d := range downloads {
		if d.err != nil {
			errs = append(errs, d.err)
		}
	}
	// The archives are read in the order of sources, whatever order they
	// arrived in: a record two sources list ends up from the same one.
	im := newImporter(ctx, pl)
	w := db.newBuilder(im)
	defer w.discard()
	imported := map[string]int{} // URL → records read from its archive
	unchanged := 0
	for i, d := range downloads {
		switch {
		case d.err != nil:
		case d.notModified:
			unchanged++
		default:
			im.beginSource(d.src.URL)
			before := im.stats.Records
			if err := im.importZip(d.file, d.sums, d.fps); err != nil {
				pl.abort()
				return ImportStats{}, fmt.Errorf("update vulnerability database: %w", err)
			}
			imported[d.src.URL] = im.stats.Records - before
			// 64 bytes an entry, not needed any more: an archive's
			// worth less memory while the next ones import.
			downloads[i].sums, downloads[i].fps = nil, nil
		}
	}
	now := time.Now().UTC()
	err = db.commit(w, pl, "update vulnerability database", func(st *storedStatus) {
		// st was just decoded inside the transaction: its map is ours to
		// change in place.
		if st.Sources == nil {
			st.Sources = map[string]SourceStatus{}
		}
		for _, d := range downloads {
			s := st.Sources[d.src.URL]
			s.Ecosystem, s.URL, s.CheckedAt, s.Error = d.src.Ecosystem, d.src.URL, now, ""
			switch {
			case d.err != nil:
				s.Error = d.err.Error()
			case !d.notModified:
				s.ETag, s.LastModified, s.ChangedAt, s.Records = d.etag, d.lastModified, now, imported[d.src.URL]
			}
			st.Sources[d.src.URL] = s
		}
	})
	if err != nil {
		return ImportStats{}, err
	}
	stats := im.stats
	stats.Unchanged = unchanged
	pl.done("updated: %d records, %d skipped, %d sources unchanged", stats.Records, stats.Skipped, stats.Unchanged)
	return stats, errors.Join(errs...)
}

// fetchAll downloads sources, at most db.fetchLimit at once, and returns
// their outcomes in the order of sources. A cancelled ctx stops the
// downloads not yet started (they fail with its error).
func (db *DB) fetchAll(ctx context.Context, client *http.Client, sources []Source, known map[string]SourceStatus, pl *progress) []download {
	downloads := make([]download, len(sources))
	slots := make(chan struct{}, max(1, db.fetchLimit))
	var wg sync.WaitGroup
	var plMu sync.Mutex // the progress line is not safe for concurrent use
	report := func(format string, args ...any) {
		plMu.Lock()
		defer plMu.Unlock()
		pl.update(format, args...)
	}
	for i, src := range sources {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			downloads[i] = download{src: src, err: fmt.Errorf("update vulnerability database: %s %s: %w", src.Ecosystem, src.URL, ctx.Err())}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			downloads[i] = db.fetch(ctx, client, src, known[src.URL], report)
		}()
	}
	wg.Wait()
	return downloads
}

// fetch makes one conditional GET and streams a changed archive to a
// temporary file next to the database, checking it opens as a zip so that
// the import transaction only sees archives it can read.
func (db *DB) fetch(ctx context.Context, client *http.Client, src Source, prev SourceStatus, report func(string, ...any)) download {
	d := download{src: src}
	fail := func(format string, args ...any) download {
		d.err = fmt.Errorf("update vulnerability database: %s %s: %s", src.Ecosystem, src.URL, fmt.Sprintf(format, args...))
		if d.file != "" {
			os.Remove(d.file)
			d.file = ""
		}
		return d
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.URL, nil)
	if err != nil {
		return fail("%v", err)
	}
	if prev.ETag != "" {
		req.Header.Set("If-None-Match", prev.ETag)
	}
	if prev.LastModified != "" {
		req.Header.Set("If-Modified-Since", prev.LastModified)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fail("%v", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		d.notModified = true
		return d
	case http.StatusOK:
	default:
		return fail("server answered %s", resp.Status)
	}
	tmp, err := os.CreateTemp(db.dir, downloadPattern)
	if err != nil {
		return fail("create temporary file: %v", err)
	}
	d.file = tmp.Name()
	n, err := io.Copy(tmp, &countingReader{r: resp.Body, onRead: func(n int64) {
		report("downloading %s: %.1f MB", src.Ecosystem, float64(n)/1e6)
	}})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail("download after %d bytes: %v", n, err)
	}
	if d.sums, d.fps, err = db.verifyDownload(d.file); err != nil {
		return fail("downloaded archive refused, the records it brought before are kept: %v", err)
	}
	d.etag, d.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	return d
}

// maxArchiveEntries bounds the entries of one downloaded archive (and the
// 32 bytes per entry kept of it until the import): osv.dev's largest (npm,
// with the malicious-package reports) have a few hundred thousand.
const maxArchiveEntries = 1_000_000

// verifyDownload is verifyArchive with the records stored in force:
// an entry whose fingerprint is the one its record was last read from
// holds the very bytes that were verified and imported then, so it is
// not decompressed again; its content hash is the stored one. A daily
// update changes about 1% of the records, and decompressing every entry
// of every archive was most of its time.
func (db *DB) verifyDownload(path string) (sums, fps [][32]byte, err error) {
	// Update holds writeMu: nothing writes to db.bolt meanwhile, so this
	// read transaction holds up no writer.
	db.mu.RLock()
	defer db.mu.RUnlock()
	err = db.bolt.View(func(tx *bolt.Tx) error {
		records := tx.Bucket([]byte(bucketRecords))
		known := func(id string) (raw, zip [32]byte) {
			v := records.Get([]byte(id))
			if v == nil {
				return raw, zip
			}
			// Damaged metadata is reported where the import reads it;
			// here it only means "decompress".
			if m, err := viewRecordMeta(v); err == nil {
				return m.raw, m.zip
			}
			return raw, zip
		}
		sums, fps, err = verifyArchive(path, known)
		return err
	})
	return sums, fps, err
}

// verifyArchive reads every record entry of a downloaded archive through,
// so that its CRC-32 is checked: a truncated or damaged download is
// refused whole, instead of importing the records that happen to read and
// dropping the rest as "no longer listed". It returns the sha256 of each
// entry's content, by index, so that the import reads again only entries
// that changed, and each entry's fingerprint (zipFingerprint). known, if
// not nil, gives the content hash and fingerprint stored for a record id:
// an entry with that fingerprint is not read through (see verifyDownload).
func verifyArchive(path string, known func(id string) (raw, zip [32]byte)) (sums, fps [][32]byte, err error) {
	zr, err := openZip(path)
	if err != nil {
		return nil, nil, fmt.Errorf("not a zip archive: %w", err)
	}
	defer zr.Close()
	if len(zr.File) > maxArchiveEntries {
		return nil, nil, fmt.Errorf("%d entries, more than %d", len(zr.File), maxArchiveEntries)
	}
	sums = make([][32]byte, len(zr.File))
	fps = make([][32]byte, len(zr.File))
	h := sha256.New()
	// One buffer for every entry: io.Copy would allocate 32 KiB for each
	// of a few hundred thousand records.
	buf := make([]byte, 32<<10)
	for i, zf := range zr.File {
		if zf.FileInfo().IsDir() || !strings.EqualFold(filepath.Ext(zf.Name), ".json") {
			continue
		}
		fp, ok := zipFingerprint(zf, h, buf)
		if ok {
			fps[i] = fp
			if known != nil {
				if raw, zip := known(recordIDHint(zf.Name)); zip == fp && raw != [32]byte{} {
					sums[i] = raw
					continue
				}
			}
		}
		h.Reset()
		if err := verifyEntry(zf, h, buf); err != nil {
			return nil, nil, fmt.Errorf("entry %s: %w", zf.Name, err)
		}
		h.Sum(sums[i][:0])
	}
	return sums, fps, nil
}

// zipFingerprint hashes an archive entry as stored: its name, method,
// CRC-32, sizes and compressed bytes. Two entries with one fingerprint
// decompress to the same bytes, so an entry seen before need not be
// decompressed to know its content. ok is false for an entry too big or
// unreadable, which is then verified the long way.
func zipFingerprint(zf *zip.File, h hash.Hash, buf []byte) (fp [32]byte, ok bool) {
	if zf.CompressedSize64 > maxRecordSize || zf.UncompressedSize64 > maxRecordSize {
		return fp, false
	}
	raw, err := zf.OpenRaw()
	if err != nil {
		return fp, false
	}
	h.Reset()
	var hdr [2 + 4 + 8 + 8]byte
	binary.LittleEndian.PutUint16(hdr[0:], zf.Method)
	binary.LittleEndian.PutUint32(hdr[2:], zf.CRC32)
	binary.LittleEndian.PutUint64(hdr[6:], zf.CompressedSize64)
	binary.LittleEndian.PutUint64(hdr[14:], zf.UncompressedSize64)
	h.Write([]byte(zf.Name))
	h.Write([]byte{0})
	h.Write(hdr[:])
	n, err := io.CopyBuffer(h, raw, buf)
	if err != nil || uint64(n) != zf.CompressedSize64 {
		return fp, false
	}
	h.Sum(fp[:0])
	return fp, true
}

func verifyEntry(zf *zip.File, h io.Writer, buf []byte) error {
	if zf.UncompressedSize64 > maxRecordSize {
		return fmt.Errorf("record is %d bytes, more than %d", zf.UncompressedSize64, maxRecordSize)
	}
	rc, err := zf.Open()
	if err != nil {
		return err
	}
	defer rc.Close()
	// The header's size can lie (a zip bomb): read at most the limit.
	n, err := io.CopyBuffer(h, io.LimitReader(rc, maxRecordSize+1), buf)
	switch {
	case err != nil:
		return err
	case n > maxRecordSize:
		return fmt.Errorf("record is more than %d bytes", maxRecordSize)
	}
	return nil
}

// countingReader reports how much was read, for the progress line.
type countingReader struct {
	r      io.Reader
	n      int64
	onRead func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.onRead(c.n)
	return n, err
}
