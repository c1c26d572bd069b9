// Package cache keeps verified, content-addressed manifests and blobs on a
// distribution storage driver (filesystem by default; s3, gcs, azure), with
// size-bounded LRU eviction and one upstream download per digest.
package cache

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"

	"github.com/portcullis/portcullis/telemetry"
)

// ErrNotFound means the store does not hold the digest.
var ErrNotFound = errors.New("not in cache")

// Config selects the storage driver and bounds the cache.
type Config struct {
	Driver     string         // distribution driver name; "" means "filesystem"
	Parameters map[string]any // driver parameters (filesystem: rootdirectory)
	// SpoolDir holds downloads in progress when the driver is not the local
	// filesystem. With the filesystem driver they live inside its root so a
	// verified download is committed by a rename.
	SpoolDir string
	MaxBytes int64 // 0 means unbounded; downloads in progress count too
	// MaxBlobSize bounds one blob download whose size no descriptor
	// declared; 0 means DefaultMaxBlobSize.
	MaxBlobSize int64
	// MaxManifestMemory bounds the in-memory manifest cache; 0 means 16 MiB.
	MaxManifestMemory int64
	Logger            *slog.Logger
	// Metrics counts evictions; nil counts nothing.
	Metrics *telemetry.CacheMetrics
}

// Store is the content store. Nothing is visible under a digest until its
// bytes were verified against it, and a stopped process never exposes a
// partial write: writes go to a spool or upload location and are moved into
// place. What a power loss may leave short is caught by the hash of every
// blob's first read in each process (ingest.go's commit says why).
type Store struct {
	driver      storagedriver.StorageDriver
	spoolDir    string
	spoolRel    string // spoolDir as a driver path, when it lives inside the driver
	maxBytes    int64
	maxBlobSize int64
	spooled     atomic.Int64 // bytes in spool files not committed yet
	localRoot   string       // the filesystem driver's root directory, else ""
	// localRootClean: localRoot is already clean and not "/", so a path
	// under it is localRoot + a driver path.
	localRootClean bool
	// hashEveryRead: the driver's objects have no identity a read can
	// trust (see the top of verify.go), so every read is hashed.
	hashEveryRead bool
	// uploadDir holds this Store's uploads on non-filesystem drivers. It
	// is its own: other replicas on the same bucket have theirs, with
	// uploads in progress a starting replica must not delete.
	uploadDir   string
	spares      chan *os.File // empty spool files made ahead (spares.go)
	verified    *verifiedSet
	verifying   singleflight.Group // one whole-file hash per digest at a time
	index       *index
	manifests   *memCache
	log         *slog.Logger
	metrics     *telemetry.CacheMetrics
	indexLoaded chan struct{}
}

const spoolName = "_spool"

// uploadsRoot holds uploads to non-filesystem drivers until they are moved
// into place, one directory per Store.
const uploadsRoot = "/_uploads"

// staleUploadAge is when an upload left under uploadsRoot is taken as
// abandoned by a crashed process: far longer than an upload may take (a
// commit is bounded by 10 minutes), since another replica's upload in
// progress must never be deleted.
const staleUploadAge = time.Hour

// maxStaleUploads bounds what one start-up deletes; the rest goes at the
// next start.
const maxStaleUploads = 10000

// DefaultMaxBlobSize bounds a blob download of unknown size.
const DefaultMaxBlobSize = 32 << 30

// maxManifestSize bounds a manifest read back from storage, as
// upstream.MaxManifestSize bounds one read from an upstream.
const maxManifestSize = 4 << 20

// Open creates the driver, clears what a previous process left half-written,
// and starts indexing what is stored.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	name := cmp.Or(cfg.Driver, "filesystem")
	params := cfg.Parameters
	if params == nil {
		params = map[string]any{}
	}
	drv, err := factory.Create(ctx, name, params)
	if err != nil {
		return nil, fmt.Errorf("create storage driver %s: %w", name, err)
	}
	s := &Store{
		driver:      drv,
		spoolDir:    cfg.SpoolDir,
		maxBytes:    cfg.MaxBytes,
		maxBlobSize: cmp.Or(cfg.MaxBlobSize, DefaultMaxBlobSize),
		verified:    newVerifiedSet(maxVerified),
		index:       newIndex(),
		manifests:   newMemCache(cmp.Or(cfg.MaxManifestMemory, 16<<20)),
		log:         cmp.Or(cfg.Logger, slog.Default()),
		metrics:     cfg.Metrics,
		indexLoaded: make(chan struct{}),
		// Local files have an inode and nanosecond times; an in-memory
		// driver has no other writer. Anything else is remote storage.
		hashEveryRead: name != "filesystem" && name != "inmemory",
	}
	if name == "filesystem" {
		root, _ := params["rootdirectory"].(string)
		if root == "" {
			return nil, errors.New("filesystem storage: rootdirectory is required")
		}
		s.spoolDir = filepath.Join(root, spoolName)
		s.spoolRel = "/" + spoolName
		s.localRoot = root
		s.localRootClean = joinsByConcatenation(root)
	}
	if s.spoolDir == "" {
		return nil, errors.New("cache: SpoolDir is required for non-filesystem drivers")
	}
	// Whatever is in the spool was never verified and committed.
	if err := os.RemoveAll(s.spoolDir); err != nil {
		return nil, fmt.Errorf("clear spool %s: %w", s.spoolDir, err)
	}
	if err := os.MkdirAll(s.spoolDir, 0o755); err != nil {
		return nil, fmt.Errorf("create spool %s: %w", s.spoolDir, err)
	}
	s.spares = make(chan *os.File, SpareSpoolFiles)
	s.refillSpares()
	if s.spoolRel == "" {
		id := make([]byte, 8)
		if _, err := rand.Read(id); err != nil {
			return nil, fmt.Errorf("cache instance id: %w", err)
		}
		s.uploadDir = uploadsRoot + "/" + hex.EncodeToString(id)
		s.clearStaleUploads(ctx)
	}
	go s.loadIndex(context.WithoutCancel(ctx))
	return s, nil
}

// clearStaleUploads deletes uploads that crashed processes left behind on
// shared storage, leaving those of running replicas alone. Only completed
// uploads are objects; the storage's own incomplete multipart uploads are
// for a bucket lifecycle rule to abort (see the README).
func (s *Store) clearStaleUploads(ctx context.Context) {
	errEnough := errors.New("enough for one start")
	cutoff := time.Now().Add(-staleUploadAge)
	var stale []string
	err := s.driver.Walk(ctx, uploadsRoot, func(fi storagedriver.FileInfo) error {
		if fi.IsDir() || !fi.ModTime().Before(cutoff) {
			return nil
		}
		stale = append(stale, fi.Path())
		if len(stale) >= maxStaleUploads {
			return errEnough
		}
		return nil
	})
	if err != nil && !isPathNotFound(err) && !errors.Is(err, errEnough) {
		s.log.Warn("list stale uploads", "err", err)
	}
	for _, p := range stale {
		if err := s.driver.Delete(ctx, p); err != nil && !isPathNotFound(err) {
			s.log.Warn("clear stale upload", "path", p, "err", err)
		}
	}
	if len(stale) > 0 {
		s.log.Info("cleared stale uploads", "count", len(stale))
	}
}

// WaitIndexed blocks until the start-up index scan finished (tests, metrics).
func (s *Store) WaitIndexed(ctx context.Context) error {
	select {
	case <-s.indexLoaded:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Bytes is the size of everything indexed.
func (s *Store) Bytes() int64 { return s.index.totalBytes() }

func blobDir(d digest.Digest) string {
	hex := d.Encoded()
	return "/blobs/" + string(d.Algorithm()) + "/" + hex[:2] + "/" + hex
}

// dataPath is blobDir(d) + "/data", built in one allocation: every warm GET
// builds it.
func dataPath(d digest.Digest) string {
	hex := d.Encoded()
	return "/blobs/" + string(d.Algorithm()) + "/" + hex[:2] + "/" + hex + "/data"
}

func mediaTypePath(d digest.Digest) string { return blobDir(d) + "/mediatype" }

// joinsByConcatenation tells whether root + a driver path ("/blobs/...")
// is the path filepath.Join would make: root is clean and not "/".
func joinsByConcatenation(root string) bool {
	return root == filepath.Clean(root) && root != "/"
}

func isPathNotFound(err error) bool {
	if err == nil { // the warm path asks with nil: no errors.As target on the heap
		return false
	}
	var pnf storagedriver.PathNotFoundError
	return errors.As(err, &pnf)
}

func (s *Store) loadIndex(ctx context.Context) {
	defer close(s.indexLoaded)
	type found struct {
		d    digest.Digest
		size int64
		mod  time.Time
	}
	var all []found
	err := s.driver.Walk(ctx, "/blobs", func(fi storagedriver.FileInfo) error {
		if fi.IsDir() || !strings.HasSuffix(fi.Path(), "/data") {
			return nil
		}
		parts := strings.Split(strings.TrimPrefix(fi.Path(), "/blobs/"), "/")
		if len(parts) != 4 {
			return nil
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[2])
		if d.Validate() != nil {
			return nil
		}
		all = append(all, found{d, fi.Size(), fi.ModTime()})
		return nil
	})
	if err != nil && !isPathNotFound(err) {
		s.log.Warn("index cache", "err", err)
	}
	slices.SortFunc(all, func(a, b found) int { return b.mod.Compare(a.mod) })
	for _, f := range all {
		s.index.addFound(f.d, f.size)
	}
	s.evict(ctx)
}

// Blob is an open handle on a stored blob; it is pinned against eviction
// until Close.
type Blob struct {
	Size  int64
	d     digest.Digest
	s     *Store
	close func()
}

// Close unpins the blob.
func (b *Blob) Close() error {
	if b.close != nil {
		b.close()
		b.close = nil
	}
	return nil
}

// Open pins a stored blob and returns it, or ErrNotFound.
func (s *Store) Open(ctx context.Context, d digest.Digest) (*Blob, error) {
	if b, ok := s.openIndexed(d); ok {
		return b, nil
	}
	// Not indexed (yet): another replica may have stored it, or the
	// start-up scan has not reached it.
	fi, err := s.driver.Stat(ctx, dataPath(d))
	if isPathNotFound(err) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("stat cached blob %s: %w", d, err)
	}
	s.index.add(d, fi.Size())
	if b, ok := s.openIndexed(d); ok {
		return b, nil
	}
	return nil, ErrNotFound // evicted in between
}

// openIndexed pins and returns d if the in-memory index holds it. It never
// asks the storage driver, so it is safe to call under a lock.
func (s *Store) openIndexed(d digest.Digest) (*Blob, bool) {
	size, ok := s.index.pin(d)
	if !ok {
		return nil, false
	}
	return &Blob{Size: size, d: d, s: s, close: func() { s.index.unpin(d) }}, true
}

// Has reports, from memory only, whether d is known to be stored. False
// can still mean stored (not indexed yet); callers use it to skip work.
func (s *Store) Has(d digest.Digest) bool {
	s.index.mu.Lock()
	defer s.index.mu.Unlock()
	_, ok := s.index.entries[d]
	return ok
}

// Stat returns a stored blob's size, or ErrNotFound.
func (s *Store) Stat(ctx context.Context, d digest.Digest) (int64, error) {
	b, err := s.Open(ctx, d)
	if err != nil {
		return 0, err
	}
	defer b.Close()
	return b.Size, nil
}

// Manifest returns a stored manifest and its media type, or ErrNotFound.
func (s *Store) Manifest(ctx context.Context, d digest.Digest) ([]byte, string, error) {
	if body, mt, ok := s.manifests.get(d); ok {
		s.index.touch(d)
		return body, mt, nil
	}
	mt, err := s.driver.GetContent(ctx, mediaTypePath(d))
	if err == nil {
		var body []byte
		body, err = s.readManifest(ctx, d)
		if err == nil {
			s.index.add(d, int64(len(body)))
			s.index.touch(d)
			s.manifests.put(d, body, string(mt))
			return body, string(mt), nil
		}
	}
	if errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrTooLarge) {
		// Altered on disk: gone, so the next request fetches it again.
		s.evictCorrupt(ctx, d, err)
		return nil, "", ErrNotFound
	}
	if isPathNotFound(err) {
		return nil, "", ErrNotFound
	}
	return nil, "", fmt.Errorf("read cached manifest %s: %w", d, err)
}

// readManifest reads a stored manifest's bytes, bounded, and checks them
// against d: the in-memory copy is trusted, what comes from storage is not.
func (s *Store) readManifest(ctx context.Context, d digest.Digest) ([]byte, error) {
	rc, err := s.driver.Reader(ctx, dataPath(d), 0)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, maxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxManifestSize {
		return nil, fmt.Errorf("cached manifest %s is over %d bytes: %w", d, maxManifestSize, ErrTooLarge)
	}
	if got := d.Algorithm().FromBytes(body); got != d {
		return nil, fmt.Errorf("cached manifest %s: %w: its bytes hash to %s", d, ErrDigestMismatch, got)
	}
	return body, nil
}

// PutManifest verifies and stores a manifest with its media type.
func (s *Store) PutManifest(ctx context.Context, d digest.Digest, mediaType string, body []byte) error {
	if got := d.Algorithm().FromBytes(body); got != d {
		return fmt.Errorf("store manifest %s: %w (got %s)", d, ErrDigestMismatch, got)
	}
	// The media type goes first: the data file is the commit marker.
	if err := s.driver.PutContent(ctx, mediaTypePath(d), []byte(mediaType)); err != nil {
		return fmt.Errorf("store manifest %s media type: %w", d, err)
	}
	in, err := s.newIngest(d.Algorithm())
	if err != nil {
		return err
	}
	if _, err := in.Write(body); err != nil {
		in.cancel()
		return err
	}
	err = in.commit(ctx, d)
	// The spare this took is replaced here, as a download's is when it
	// ends: on a cold pull, manifests are stored before its blobs are asked.
	s.refillSpares()
	if err != nil {
		return err
	}
	s.manifests.put(d, body, mediaType)
	return nil
}

// ErrDigestMismatch means bytes did not hash to the digest they were stored under.
var ErrDigestMismatch = errors.New("digest mismatch")

// evict removes least recently used items until what is stored plus what
// is being downloaded fits in MaxBytes.
func (s *Store) evict(ctx context.Context) {
	if s.maxBytes <= 0 {
		return
	}
	for _, d := range s.index.victims(s.maxBytes - s.spooled.Load()) {
		s.manifests.remove(d)
		s.verified.forget(d)
		if err := s.driver.Delete(ctx, blobDir(d)); err != nil && !isPathNotFound(err) {
			s.log.Warn("evict", "digest", d, "err", err)
			continue
		}
		s.metrics.Evicted()
		s.log.Debug("evicted", "digest", d)
	}
}
