package cache

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/opencontainers/go-digest"
)

// ScrubReport is what Scrub found.
type ScrubReport struct {
	Checked int   // blobs and manifests hashed
	Bad     int   // of those, the ones that did not match and were deleted
	Bytes   int64 // bytes hashed
	// BadDigests lists what was deleted (at most maxListedBad of them).
	BadDigests []digest.Digest
}

// maxListedBad bounds ScrubReport.BadDigests; Bad still counts them all.
const maxListedBad = 1000

// Scrub re-hashes every blob and manifest in the storage cfg names and
// deletes each one whose bytes do not match its digest. It does not touch
// downloads in progress, so it may run next to a server on the same storage
// (a request racing a deletion fails once; the next downloads a good copy).
// progress, when not nil, is called after every item.
func Scrub(ctx context.Context, cfg Config, progress func(d digest.Digest, size int64, ok bool)) (ScrubReport, error) {
	name := cmp.Or(cfg.Driver, "filesystem")
	params := cfg.Parameters
	if params == nil {
		params = map[string]any{}
	}
	drv, err := factory.Create(ctx, name, params)
	if err != nil {
		return ScrubReport{}, fmt.Errorf("create storage driver %s: %w", name, err)
	}
	log := cmp.Or(cfg.Logger, slog.Default())
	var found []storagedriver.FileInfo
	err = drv.Walk(ctx, "/blobs", func(fi storagedriver.FileInfo) error {
		if !fi.IsDir() && strings.HasSuffix(fi.Path(), "/data") {
			found = append(found, fi)
		}
		return nil
	})
	if err != nil && !isPathNotFound(err) {
		return ScrubReport{}, fmt.Errorf("list cache: %w", err)
	}
	var rep ScrubReport
	for _, fi := range found {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		d, ok := digestOfPath(fi.Path())
		if !ok {
			continue // not ours: the layout is blobs/<alg>/<xx>/<hex>/data
		}
		n, cause, err := hashStored(ctx, drv, d)
		if isPathNotFound(err) {
			continue // evicted since the listing
		}
		if err != nil {
			return rep, err
		}
		rep.Checked++
		rep.Bytes += n
		if cause != nil {
			rep.Bad++
			if len(rep.BadDigests) < maxListedBad {
				rep.BadDigests = append(rep.BadDigests, d)
			}
			log.Error("cached content is corrupt: deleted", "digest", d, "err", cause)
			if err := drv.Delete(ctx, blobDir(d)); err != nil && !isPathNotFound(err) {
				return rep, fmt.Errorf("delete corrupt %s: %w", d, err)
			}
		}
		if progress != nil {
			progress(d, n, cause == nil)
		}
	}
	return rep, nil
}

// digestOfPath reads the digest out of a stored data file's path.
func digestOfPath(path string) (digest.Digest, bool) {
	parts := strings.Split(strings.TrimPrefix(path, "/blobs/"), "/")
	if len(parts) != 4 || parts[3] != "data" || !strings.HasPrefix(parts[2], parts[1]) {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[2])
	if d.Validate() != nil || !d.Algorithm().Available() {
		return "", false
	}
	return d, true
}

// hashStored hashes d's stored bytes; cause says why they do not match.
func hashStored(ctx context.Context, drv storagedriver.StorageDriver, d digest.Digest) (n int64, cause, err error) {
	rc, err := drv.Reader(ctx, dataPath(d), 0)
	if err != nil {
		return 0, nil, err
	}
	defer rc.Close()
	h := d.Algorithm().Hash()
	n, err = io.Copy(h, rc)
	if err != nil {
		return n, nil, fmt.Errorf("read cached %s: %w", d, err)
	}
	if got := digest.NewDigest(d.Algorithm(), h); got != d {
		return n, fmt.Errorf("%w: %d bytes hash to %s", ErrDigestMismatch, n, got), nil
	}
	return n, nil, nil
}
