// Package badfiles checks the regular files of an image's layers for
// known-bad content: ClamAV hash signatures from the vulnerability
// database (by size, then hash) and, when configured, a clamd that every
// file up to a size is streamed to. It reads each file at most once,
// feeding the hashes and clamd from the same pass.
//
// One Checker serves one scan; it is safe for concurrent use by the scan's
// layer workers.
package badfiles

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/portcullis/portcullis/scanner/clamd"
	"github.com/portcullis/portcullis/scanner/vulndb"
)

// MaxFindings bounds the malware file findings of one scan: an image of a
// million copies of one bad file says so once per copy up to this, then
// Truncated counts the rest.
const MaxFindings = 1000

// Checker checks files for one scan. Its zero parts are off: a nil
// Signatures matcher (or an empty one) hashes nothing, a nil Clamd sends
// nothing.
type Checker struct {
	Signatures *vulndb.SignatureMatcher
	Clamd      *clamd.Client
	// ClamdMaxFile is scan.clamd_max_file: larger files are not sent to
	// clamd (counted in Skipped).
	ClamdMaxFile int64

	mu        sync.Mutex
	findings  int
	truncated int
	skipped   int
}

// Stats says what a scan's checks left out.
type Stats struct {
	// Skipped counts the files larger than scan.clamd_max_file, not
	// sent to clamd.
	Skipped int
	// Truncated counts the findings left out past MaxFindings.
	Truncated int
}

// Stats reports what was left out so far.
func (c *Checker) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Skipped: c.skipped, Truncated: c.truncated}
}

// plan says what a file of this size needs.
func (c *Checker) plan(size int64) (need vulndb.Need, toClamd bool, err error) {
	if c.Signatures != nil {
		if need, err = c.Signatures.Candidate(size); err != nil {
			return 0, false, err
		}
	}
	toClamd = c.Clamd != nil && size <= c.ClamdMaxFile
	return need, toClamd, nil
}

// Wants reports whether a regular file of this size must be read by
// Check: false costs the walk nothing more for that file. An error is the
// database's (the scan's evaluation error).
func (c *Checker) Wants(size int64) (bool, error) {
	need, toClamd, err := c.plan(size)
	return need != 0 || toClamd, err
}

// Check reads a regular file (path in the image, layer the digest of the
// layer holding it, size from its tar header, r its content) and returns
// the malware findings for it. A file over scan.clamd_max_file is not
// sent to clamd and is counted in Stats().Skipped. clamd unreachable or
// answering an error is an error, never a clean file.
func (c *Checker) Check(ctx context.Context, path, layer string, size int64, r io.Reader) ([]vulndb.Finding, error) {
	need, toClamd, err := c.plan(size)
	if err != nil {
		return nil, err
	}
	if c.Clamd != nil && !toClamd {
		c.mu.Lock()
		c.skipped++
		c.mu.Unlock()
	}
	if need == 0 && !toClamd {
		return nil, nil
	}
	var out []vulndb.Finding
	var hashes vulndb.FileHashes
	switch {
	case toClamd && need == 0:
		res, err := c.Clamd.Scan(ctx, r, size)
		if err != nil {
			return nil, fmt.Errorf("clamd check of %s in layer %s: %w", path, layer, err)
		}
		if res.Found {
			out = append(out, res.Finding(path, layer))
		}
	case toClamd:
		// One pass: the hashes read what clamd is sent.
		pr, pw := io.Pipe()
		type hashed struct {
			h   vulndb.FileHashes
			err error
		}
		done := make(chan hashed, 1)
		go func() {
			h, _, err := vulndb.HashFile(pr, need|vulndb.NeedSHA256)
			pr.CloseWithError(err)
			done <- hashed{h, err}
		}()
		res, err := c.Clamd.Scan(ctx, io.TeeReader(r, pw), size)
		pw.CloseWithError(err)
		h := <-done
		if err != nil {
			return nil, fmt.Errorf("clamd check of %s in layer %s: %w", path, layer, err)
		}
		if h.err != nil {
			return nil, fmt.Errorf("hash %s in layer %s: %w", path, layer, h.err)
		}
		hashes = h.h
		if res.Found {
			out = append(out, res.Finding(path, layer))
		}
	default:
		h, n, err := vulndb.HashFile(io.LimitReader(r, size+1), need)
		if err != nil {
			return nil, fmt.Errorf("hash %s in layer %s: %w", path, layer, err)
		}
		if n != size {
			return nil, fmt.Errorf("hash %s in layer %s: read %d bytes, its header says %d", path, layer, n, size)
		}
		hashes = h
	}
	if need != 0 {
		names, err := c.Signatures.Match(size, hashes)
		if err != nil {
			return nil, fmt.Errorf("match %s in layer %s: %w", path, layer, err)
		}
		for _, name := range names {
			out = append(out, vulndb.MalwareFileFinding(name, path, layer, hashes.SHA256Hex()))
		}
	}
	return c.bound(out), nil
}

// bound keeps the scan's findings under MaxFindings.
func (c *Checker) bound(fs []vulndb.Finding) []vulndb.Finding {
	if len(fs) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	room := max(MaxFindings-c.findings, 0)
	if len(fs) > room {
		c.truncated += len(fs) - room
		fs = fs[:room]
	}
	c.findings += len(fs)
	if len(fs) == 0 {
		return nil
	}
	return fs
}
