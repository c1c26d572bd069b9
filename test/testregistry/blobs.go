package testregistry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const mib = 1 << 20

// corruptSpan is how many bytes CorruptBlob inverts: enough that no checksum
// collision is plausible, few enough that the length stays obviously right.
const corruptSpan = 64

// blobStore keeps blobs in files laid out like ggcr's disk handler
// (<dir>/sha256/<hex>) and lets the fixture corrupt or slow down reads.
//
// Writes go through ggcr's disk handler (temp file, then rename, so a blob is
// never visible half-written). Reads do not: its Stat re-hashes the whole file
// on every HEAD and GET, which for a 1 GiB layer costs seconds per request.
// Uploads are digest-verified before they land, so the file size suffices.
type blobStore struct {
	dir  string
	disk interface {
		registry.BlobPutHandler
		registry.BlobDeleteHandler
	}

	mu      sync.Mutex
	corrupt map[v1.Hash]bool
	delay   map[v1.Hash]time.Duration
}

func newBlobStore(dir string) (*blobStore, error) {
	disk, ok := registry.NewDiskBlobHandler(dir).(interface {
		registry.BlobPutHandler
		registry.BlobDeleteHandler
	})
	if !ok {
		return nil, errors.New("ggcr disk blob handler cannot put and delete")
	}
	return &blobStore{
		dir:     dir,
		disk:    disk,
		corrupt: map[v1.Hash]bool{},
		delay:   map[v1.Hash]time.Duration{},
	}, nil
}

// path is safe to join: v1.Hash only holds a validated algorithm and hex.
func (b *blobStore) path(h v1.Hash) string {
	return filepath.Join(b.dir, h.Algorithm, h.Hex)
}

func (b *blobStore) setCorrupt(h v1.Hash) {
	b.mu.Lock()
	b.corrupt[h] = true
	b.mu.Unlock()
}

func (b *blobStore) setDelay(h v1.Hash, perMiB time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if perMiB <= 0 {
		delete(b.delay, h)
		return
	}
	b.delay[h] = perMiB
}

// Stat implements registry.BlobStatHandler.
func (b *blobStore) Stat(_ context.Context, _ string, h v1.Hash) (int64, error) {
	fi, err := os.Stat(b.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, registry.ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("stat blob %s: %w", h, err)
	}
	return fi.Size(), nil
}

// Get implements registry.BlobHandler.
func (b *blobStore) Get(ctx context.Context, _ string, h v1.Hash) (io.ReadCloser, error) {
	f, err := os.Open(b.path(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, registry.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", h, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat blob %s: %w", h, err)
	}
	b.mu.Lock()
	corrupt, delay := b.corrupt[h], b.delay[h]
	b.mu.Unlock()

	r := &blobReader{ctx: ctx, f: f, size: fi.Size(), delay: delay}
	if corrupt && fi.Size() > 0 {
		r.flipFrom = fi.Size() / 2
		r.flipTo = min(fi.Size(), r.flipFrom+corruptSpan)
	}
	return r, nil
}

// Put implements registry.BlobPutHandler.
func (b *blobStore) Put(ctx context.Context, repo string, h v1.Hash, rc io.ReadCloser) error {
	return b.disk.Put(ctx, repo, h, rc)
}

// Delete implements registry.BlobDeleteHandler.
func (b *blobStore) Delete(ctx context.Context, repo string, h v1.Hash) error {
	if err := b.disk.Delete(ctx, repo, h); errors.Is(err, fs.ErrNotExist) {
		return registry.ErrNotFound
	} else if err != nil {
		return fmt.Errorf("delete blob %s: %w", h, err)
	}
	return nil
}

// blobReader serves one GET. It offers ReadAt so ggcr answers Range requests
// by seeking instead of reading and discarding everything before the range
// (which, for a slowed blob, would also sleep through it). It deliberately has
// no WriteTo, so io.Copy goes through Read and the corruption and pacing apply.
type blobReader struct {
	ctx    context.Context
	f      *os.File
	size   int64
	off    int64 // next offset for Read
	delay  time.Duration
	served int64 // bytes handed out so far, by Read or ReadAt
	paused int64 // MiB boundaries already paused at

	flipFrom, flipTo int64 // byte range to invert; empty unless corrupt
}

func (r *blobReader) Read(p []byte) (int, error) {
	n, err := r.ReadAt(p, r.off)
	r.off += int64(n)
	return n, err
}

func (r *blobReader) ReadAt(p []byte, off int64) (int, error) {
	if off < r.size {
		if err := r.pace(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.ReadAt(p, off)
	for i := max(off, r.flipFrom); i < min(off+int64(n), r.flipTo); i++ {
		p[i-off] ^= 0xff
	}
	r.served += int64(n)
	return n, err
}

// pace sleeps once per MiB already handed out. It runs before the next read,
// so the previous MiB has been written to the connection by then, and not at
// the end of the blob, where nothing would be waiting for it.
func (r *blobReader) pace() error {
	if r.delay <= 0 {
		return nil
	}
	for r.paused < r.served/mib {
		r.paused++
		t := time.NewTimer(r.delay)
		select {
		case <-t.C:
		case <-r.ctx.Done():
			t.Stop()
			return r.ctx.Err()
		}
	}
	return nil
}

func (r *blobReader) Close() error { return r.f.Close() }
