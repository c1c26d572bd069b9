package badfiles

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/scanner/clamd"
	"github.com/portcullis/portcullis/scanner/vulndb"
)

// defaultRefreshEvery is how often an Inspector asks whether the signatures
// or clamd changed.
const defaultRefreshEvery = 5 * time.Second

// Inspector is the long-lived form of Checker, for a scanner that outlives
// its scans (the server's): the signatures' sizes are kept in memory
// (vulndb.SizeIndex) and reloaded when the database changes, so a file of
// no candidate size costs a binary search and never opens the database;
// the database is opened only for a candidate (to match its hashes).
// Safe for concurrent use.
type Inspector struct {
	db           *vulndb.Shared // nil: no hash signatures
	hashMaxFile  int64
	clamd        *clamd.Client // nil: no clamd
	clamdMaxFile int64
	refreshEvery time.Duration

	index   atomic.Pointer[vulndb.SizeIndex]
	skipped atomic.Int64

	mu           sync.Mutex // serialises Refresh
	clamdVersion string
	checkedAt    time.Time
}

// NewInspector makes an inspector for hash signatures in db (nil: none;
// hashMaxFile is scan.hash_max_file) and for clamd (nil: none;
// clamdMaxFile is scan.clamd_max_file). Call Refresh (or CacheKey) before
// the first scan.
func NewInspector(db *vulndb.Shared, hashMaxFile int64, cl *clamd.Client, clamdMaxFile int64) *Inspector {
	return &Inspector{db: db, hashMaxFile: hashMaxFile, clamd: cl, clamdMaxFile: clamdMaxFile, refreshEvery: defaultRefreshEvery}
}

// Refresh reloads the size index when the database changed, and asks clamd
// for its version, at most every few seconds. An error (the database or
// clamd unreachable) must fail the scan: checking without them would pass
// what they would have found.
func (i *Inspector) Refresh(ctx context.Context) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.checkedAt.IsZero() && time.Since(i.checkedAt) < i.refreshEvery {
		return nil
	}
	if i.db != nil {
		v, err := i.db.SignatureVersion(ctx)
		if err != nil {
			return fmt.Errorf("known-bad files: %w", err)
		}
		if idx := i.index.Load(); idx == nil || idx.Version() != v {
			idx, err := i.db.SignatureSizes(ctx)
			if err != nil {
				return fmt.Errorf("known-bad files: %w", err)
			}
			i.index.Store(idx)
		}
	}
	if i.clamd != nil {
		v, err := i.clamd.Version(ctx)
		if err != nil {
			return fmt.Errorf("known-bad files: %w", err)
		}
		i.clamdVersion = v
	}
	i.checkedAt = time.Now()
	return nil
}

// CacheKey refreshes and names everything that changes what the inspector
// finds: the signature set, scan.hash_max_file, clamd's address, version
// and database, and scan.clamd_max_file. Per-layer results must be keyed by
// it.
func (i *Inspector) CacheKey(ctx context.Context) (string, error) {
	if err := i.Refresh(ctx); err != nil {
		return "", err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	key := "badfiles/1"
	if idx := i.index.Load(); idx.Version() != "" {
		key += " signatures=" + idx.Version() + " hash_max_file=" + strconv.FormatInt(i.hashMaxFile, 10)
	}
	if i.clamd != nil {
		key += " clamd=" + i.clamd.Address().String() + " " + strconv.Quote(i.clamdVersion) + " clamd_max_file=" + strconv.FormatInt(i.clamdMaxFile, 10)
	}
	return key, nil
}

// MaxSize is the largest file the inspector reads: scan.hash_max_file or
// scan.clamd_max_file, whichever is larger. Files larger than both are
// not checked, whatever the size of a signature: a walk that holds the
// files it inspects in memory must not hold a file of any size.
func (i *Inspector) MaxSize() int64 {
	m := int64(0)
	if i.db != nil {
		m = i.hashMaxFile
	}
	if i.clamd != nil {
		m = max(m, i.clamdMaxFile)
	}
	return m
}

// Wants says, from the size alone and from memory, whether a regular file
// must be read by Inspect.
func (i *Inspector) Wants(size int64) bool {
	if size > i.MaxSize() {
		if i.clamd != nil {
			i.skipped.Add(1)
		}
		return false
	}
	if i.clamd != nil && size <= i.clamdMaxFile {
		return true
	}
	if i.clamd != nil {
		i.skipped.Add(1)
	}
	return i.index.Load().Candidate(size, i.hashMaxFile) != 0
}

// Skipped counts the files not sent to clamd for their size.
func (i *Inspector) Skipped() int64 { return i.skipped.Load() }

// Inspect checks one regular file (see Checker.Check): the path in the
// image, the digest of the layer holding it, its size from the tar header
// and its content. Any error must fail the scan.
func (i *Inspector) Inspect(ctx context.Context, path, layer string, size int64, r io.Reader) ([]vulndb.Finding, error) {
	c := &Checker{Clamd: i.clamd, ClamdMaxFile: i.clamdMaxFile}
	if i.db != nil && i.index.Load().Candidate(size, i.hashMaxFile) != 0 {
		m, release, err := i.db.SignatureMatcher(ctx, i.hashMaxFile)
		if err != nil {
			return nil, fmt.Errorf("known-bad files: %w", err)
		}
		defer release()
		c.Signatures = m
	}
	fs, err := c.Check(ctx, path, layer, size, r)
	return fs, err
}
