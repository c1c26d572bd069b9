package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/cache"
)

func (p *Proxy) serveBlob(w http.ResponseWriter, r *http.Request, rt route, info *requestInfo) *regError {
	d := rt.digest // validated by the router
	up := p.upstreamFor(rt)
	if bg, ok := info.gate.(BlobGate); ok && p.gateBlobs {
		dec, err := bg.CheckBlob(r.Context(), rt.upstream, rt.repo, d)
		if err != nil {
			return errInternal("check "+blobWhat(up, rt), err)
		}
		if dec.Verdict == Block {
			return errorf(http.StatusForbidden, "DENIED", "%s", p.withDetails(r, dec))
		}
	}
	cached := p.cache.Has(d)
	if !cached {
		// Not cached: it may be something Portcullis published itself.
		if c, ok := p.localContent(r.Context(), d); ok && !isManifestType(c.MediaType) {
			info.cache = cacheLocal
			setBlobHeaders(w.Header(), d, cacheLocal, int64(len(c.Body)))
			w.WriteHeader(http.StatusOK)
			if r.Method == http.MethodGet {
				_, _ = w.Write(c.Body)
			}
			return nil
		}
	}
	if p.requireBlobLink {
		if rerr := p.checkBlobLink(r.Context(), up, rt); rerr != nil {
			return rerr
		}
	}
	if r.Method == http.MethodHead {
		return p.headBlob(w, r, rt, info)
	}
	h, err := p.openBlob(r.Context(), up, rt.repo, d, p.declaredSize(r.Context(), rt, cached))
	if err != nil {
		if r.Context().Err() != nil {
			return errorf(499, "UNKNOWN", "client went away")
		}
		if errors.Is(err, cache.ErrTooLarge) {
			return errorf(http.StatusBadGateway, "UNAVAILABLE", "fetch %s: %v", blobWhat(up, rt), err)
		}
		return fromUpstream("fetch "+blobWhat(up, rt), err, "BLOB_UNKNOWN")
	}
	defer h.Close()
	info.cache = h.Source

	start, length, status, rerr := parseRange(r.Header.Get("Range"), h.Size)
	if rerr != nil {
		return rerr
	}
	var rc io.ReadCloser
	if status == http.StatusPartialContent {
		rc, err = h.RangeReader(r.Context(), start)
		if errors.Is(err, cache.ErrUnverified) {
			// A download in flight: a range of it could not be checked
			// by the client. Send the whole blob, held back until
			// verified like any full GET (RFC 9110 §14.2 lets a server
			// ignore Range).
			start, length, status = 0, h.Size, http.StatusOK
			rc, err = h.Reader(r.Context())
		}
	} else {
		rc, err = h.Reader(r.Context())
	}
	if errors.Is(err, cache.ErrDigestMismatch) {
		// The cached copy was corrupt and is gone now; a retry fetches it.
		e := errorf(http.StatusServiceUnavailable, "UNAVAILABLE", "cached copy of %s was damaged and has been removed: retry", blobWhat(up, rt))
		e.RetryAfter = time.Second
		return e
	}
	if err != nil {
		return errInternal("read "+blobWhat(up, rt), err)
	}
	defer rc.Close()

	setBlobHeaders(w.Header(), d, h.Source, length)
	if status == http.StatusPartialContent {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, h.Size))
	}
	w.WriteHeader(status)
	if h.Source != cache.SourceHit {
		// The headers go out now, not with the first bytes of a download
		// that has yet to read them (the download waits for this request
		// to ask for them: see cache.firstReaderGrace).
		_ = http.NewResponseController(w).Flush()
	}
	n, err := sendBody(w, rc, length)
	if err == nil && length >= 0 && n != length {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		// Headers are gone; make the client see a broken transfer rather
		// than a short body it might take as complete.
		info.abort = true
		if r.Context().Err() == nil {
			p.log.Warn("blob transfer failed", "digest", d, "sent", n, "err", err)
		}
	}
	return nil
}

// sendBody copies length bytes of rc (-1: all) to w. A cached file goes
// out through w's ReadFrom, which net/http turns into sendfile; a download
// in flight sends itself (cache's SendTo), from its own file on the spool,
// so it reaches the same sendfile path as it grows.
func sendBody(w io.Writer, rc io.Reader, length int64) (int64, error) {
	if s, ok := rc.(interface {
		SendTo(w io.Writer, n int64) (int64, error)
	}); ok {
		return s.SendTo(w, length)
	}
	if length >= 0 {
		rc = io.LimitReader(rc, length)
	}
	return io.Copy(w, rc)
}

// openBlob opens d through the cache, with repo on up as the source on a
// miss: one shared download that also fills the cache, bounded by size (what
// the referring descriptor declares; -1 when unknown).
func (p *Proxy) openBlob(ctx context.Context, up Upstream, repo string, d digest.Digest, size int64) (*cache.Handle, error) {
	return p.fetcher.Open(ctx, d, size, func(ctx context.Context) (io.ReadCloser, int64, error) {
		return up.Client.GetBlob(ctx, repo, d)
	})
}

// blobWhat names a routed blob in error messages.
func blobWhat(up Upstream, rt route) string {
	return "blob " + up.Client.Name() + "/" + rt.repo + "@" + rt.digest.String()
}

func (p *Proxy) headBlob(w http.ResponseWriter, r *http.Request, rt route, info *requestInfo) *regError {
	d := rt.digest
	up := p.upstreamFor(rt)
	size, err := p.cache.Stat(r.Context(), d)
	info.cache = cacheHit
	switch {
	case errors.Is(err, cache.ErrNotFound):
		ctx, cancel := p.detach(r.Context())
		defer cancel()
		size, err = up.Client.HeadBlob(ctx, rt.repo, d)
		if err != nil {
			return fromUpstream("look up "+blobWhat(up, rt), err, "BLOB_UNKNOWN")
		}
		info.cache = cacheMiss
	case err != nil:
		return errInternal("stat "+blobWhat(up, rt), err)
	}
	setBlobHeaders(w.Header(), d, info.cache, size)
	w.WriteHeader(http.StatusOK)
	return nil
}

// setBlobHeaders writes what GET and HEAD of a blob share; length -1 means
// unknown (no Content-Length, the body is chunked). It runs on every warm
// GET: the values share one backing array (one allocation, not one per
// Header.Set) under keys already in canonical form.
func setBlobHeaders(h http.Header, d digest.Digest, source string, length int64) {
	dgst := d.String()
	v := [...]string{"application/octet-stream", dgst, `"` + dgst + `"`, "bytes", source, ""}
	vals := v[:]
	h["Content-Type"] = vals[0:1:1]
	h["Docker-Content-Digest"] = vals[1:2:2]
	h["Etag"] = vals[2:3:3]
	h["Accept-Ranges"] = vals[3:4:4]
	h["Portcullis-Cache"] = vals[4:5:5]
	if length >= 0 {
		vals[5] = strconv.FormatInt(length, 10)
		h["Content-Length"] = vals[5:6:6]
	}
}

// parseRange reads a single-range "bytes=" header (RFC 9110 §14.1.2) against
// a blob of size bytes (-1 if unknown). It returns where to start, how many
// bytes to send (-1: to the end, length unknown) and the status. A header we
// do not support (several ranges, other units, a suffix of an unknown size)
// is ignored, as the RFC allows, and the whole blob is sent.
func parseRange(h string, size int64) (start, length int64, status int, err *regError) {
	whole := func() (int64, int64, int, *regError) { return 0, size, http.StatusOK, nil }
	spec, ok := strings.CutPrefix(h, "bytes=")
	if h == "" || !ok || strings.Contains(spec, ",") {
		return whole()
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return whole()
	}
	unsatisfiable := errorf(http.StatusRequestedRangeNotSatisfiable, "UNSUPPORTED",
		"range %q not satisfiable for a blob of %d bytes", h, size)
	if first == "" { // suffix: the last N bytes
		n, perr := strconv.ParseInt(last, 10, 64)
		if perr != nil || n < 0 || size < 0 {
			return whole()
		}
		if n == 0 {
			return 0, 0, 0, unsatisfiable
		}
		n = min(n, size)
		return size - n, n, http.StatusPartialContent, nil
	}
	start, perr := strconv.ParseInt(first, 10, 64)
	if perr != nil || start < 0 {
		return whole()
	}
	end := int64(-1)
	if last != "" {
		end, perr = strconv.ParseInt(last, 10, 64)
		if perr != nil || end < start {
			return whole()
		}
	}
	if size < 0 {
		return whole() // no Content-Range without the size
	}
	if start >= size {
		return 0, 0, 0, unsatisfiable
	}
	if end < 0 || end >= size {
		end = size - 1
	}
	return start, end - start + 1, http.StatusPartialContent, nil
}

// declaredSize is the size a manifest of the repository declared for the
// blob (-1: none known), so a download stops there, not at
// cache.max_blob_size. Cached blobs need no bound: nothing is downloaded.
func (p *Proxy) declaredSize(ctx context.Context, rt route, cached bool) int64 {
	if cached {
		return -1
	}
	size, _, err := p.state.BlobLink(ctx, rt.upstream, rt.repo, rt.digest.String())
	if err != nil {
		p.log.Warn("look up declared blob size", "blob", rt.digest, "repo", rt.upstream+"/"+rt.repo, "err", err)
		return -1
	}
	return size
}
