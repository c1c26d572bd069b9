package vulndb

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
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
}

// Update downloads each source with a conditional request (If-None-Match /
// If-Modified-Since from the last successful download), streams changed
// archives to temporary files, and imports them in one transaction. An
// updated source replaces what it brought before: records it no longer
// lists are removed. A source that fails is recorded in Status and its
// error returned (joined with the others'), but does not stop the others.
// client nil means http.DefaultClient.
func (db *DB) Update(ctx context.Context, sources []Source, client *http.Client, progress io.Writer) (ImportStats, error) {
	if client == nil {
		client = http.DefaultClient
	}
	// The stored status already has the sources by URL.
	prev, err := db.readStoredStatus()
	if err != nil {
		return ImportStats{}, err
	}
	known := prev.Sources
	pl := newProgress(progress)
	var downloads []download
	defer func() {
		for _, d := range downloads {
			if d.file != "" {
				os.Remove(d.file)
			}
		}
	}()
	var errs []error
	for _, src := range sources {
		if err := ctx.Err(); err != nil {
			return ImportStats{}, fmt.Errorf("update vulnerability database: %w", err)
		}
		d := db.fetch(ctx, client, src, known[src.URL], pl)
		if d.err != nil {
			errs = append(errs, d.err)
		}
		downloads = append(downloads, d)
	}

	if err := ctx.Err(); err != nil {
		return ImportStats{}, fmt.Errorf("update vulnerability database: %w", err)
	}
	// Read the archives before the write transaction, as Import does.
	im := newImporter(ctx, pl)
	imported := map[string]int{} // URL → records read from its archive
	unchanged := 0
	for _, d := range downloads {
		switch {
		case d.err != nil:
		case d.notModified:
			unchanged++
		default:
			im.beginSource(d.src.URL)
			before := im.stats.Records
			if err := im.importZip(d.file); err != nil {
				pl.abort()
				return ImportStats{}, fmt.Errorf("update vulnerability database: %w", err)
			}
			imported[d.src.URL] = im.stats.Records - before
		}
	}
	now := time.Now().UTC()
	err = db.commit(im, pl, "update vulnerability database", func(st *storedStatus) {
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

// fetch makes one conditional GET and streams a changed archive to a
// temporary file next to the database, checking it opens as a zip so that
// the import transaction only sees archives it can read.
func (db *DB) fetch(ctx context.Context, client *http.Client, src Source, prev SourceStatus, pl *progress) download {
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
		pl.update("downloading %s: %.1f MB", src.Ecosystem, float64(n)/1e6)
	}})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail("download after %d bytes: %v", n, err)
	}
	zr, err := zip.OpenReader(d.file)
	if err != nil {
		return fail("downloaded file is not a zip archive: %v", err)
	}
	zr.Close()
	d.etag, d.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	return d
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
