package cache

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"
)

// Stored blobs are checked against their digest before their bytes count as
// verified. Hashing every warm GET would cost the sendfile path (sha256 runs
// at ~2 GB/s, a cached blob goes out faster than that), so a blob is hashed
// once per process and file: the first whole GET hashes the bytes as they go
// out and holds the last one back until they matched; the first range
// request hashes the file whole before it answers. What was verified is
// remembered by the file's identity (size, modification and, on Linux,
// change time and inode), so a file rewritten, replaced or touched since is
// hashed again. Blobs committed by this process were hashed on their way in
// and start out verified. A byte flipped under an unchanged identity (bit
// rot on a running system) is caught on the next start, or by
// 'portcullis cache verify'.
//
// Remote object storage (s3, gcs, azure) gives no such identity: its
// modification times have whole seconds, there is no inode, and other
// replicas write the same bucket. An object replaced within the second it
// was written looks unchanged, so there every read is hashed instead: a
// whole read as it goes out (its bytes cross the network anyway; the hash
// costs CPU only), a range by hashing the whole object first (concurrent
// ranges of one blob share that hash).

// maxVerified bounds the memory of verified files; a blob that fell out is
// simply hashed again on its next use.
const maxVerified = 1 << 16

// fileIdentity tells whether a file is still the one that was verified.
type fileIdentity struct {
	size, modNanos  int64
	ino, ctimeNanos int64 // 0 where the platform or driver does not say
}

func identityOf(fi os.FileInfo) fileIdentity {
	id := fileIdentity{size: fi.Size(), modNanos: fi.ModTime().UnixNano()}
	id.ino, id.ctimeNanos = sysIdentity(fi.Sys())
	return id
}

// racyWindow is how long after a file last changed a verification of it
// is not trusted: file times tick coarsely (a jiffy), so a file changed
// within the same tick as it was verified keeps the identity it was
// verified with. Such a "racily verified" file is hashed again on its next
// use, until a verification comes after the window (as git does with its
// index).
const racyWindow = 100 * time.Millisecond

// verifiedSet remembers which stored files hashed to their digest, and
// when.
type verifiedSet struct {
	mu  sync.Mutex
	max int
	ids map[digest.Digest]verification
}

type verification struct {
	id fileIdentity
	at int64 // when it was verified, Unix nanoseconds
}

func newVerifiedSet(max int) *verifiedSet {
	return &verifiedSet{max: max, ids: map[digest.Digest]verification{}}
}

func (v *verifiedSet) has(d digest.Digest, id fileIdentity) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	got, ok := v.ids[d]
	return ok && got.id == id && got.at-max(id.modNanos, id.ctimeNanos) >= racyWindow.Nanoseconds()
}

// matches reports whether d was verified as the file id names, however
// recently: right after a verification, to tell it hashed this file.
func (v *verifiedSet) matches(d digest.Digest, id fileIdentity) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	got, ok := v.ids[d]
	return ok && got.id == id
}

func (v *verifiedSet) add(d digest.Digest, id fileIdentity) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, ok := v.ids[d]; !ok && len(v.ids) >= v.max {
		for victim := range v.ids { // any one: a miss only costs a re-hash
			delete(v.ids, victim)
			break
		}
	}
	v.ids[d] = verification{id: id, at: time.Now().UnixNano()}
}

func (v *verifiedSet) forget(d digest.Digest) {
	v.mu.Lock()
	delete(v.ids, d)
	v.mu.Unlock()
}

// identity returns the identity of d's stored file; rc, when it is the
// open file, is asked rather than the path, so the identity is that of the
// very bytes being served.
func (s *Store) identity(ctx context.Context, d digest.Digest, rc io.Reader) (fileIdentity, error) {
	if f, ok := rc.(*os.File); ok {
		fi, err := f.Stat()
		if err != nil {
			return fileIdentity{}, fmt.Errorf("stat cached blob %s: %w", d, err)
		}
		return identityOf(fi), nil
	}
	if s.localRoot != "" {
		fi, err := os.Stat(s.localPath(d))
		if err != nil {
			return fileIdentity{}, fmt.Errorf("stat cached blob %s: %w", d, err)
		}
		return identityOf(fi), nil
	}
	fi, err := s.driver.Stat(ctx, dataPath(d))
	if err != nil {
		return fileIdentity{}, fmt.Errorf("stat cached blob %s: %w", d, err)
	}
	return fileIdentity{size: fi.Size(), modNanos: fi.ModTime().UnixNano()}, nil
}

// rememberVerified records d's stored file as verified (just committed from
// hashed bytes). A failure only means it is hashed again on first use.
func (s *Store) rememberVerified(ctx context.Context, d digest.Digest) {
	if id, err := s.identity(ctx, d, nil); err == nil {
		s.verified.add(d, id)
	}
}

// evictCorrupt removes a stored item whose bytes do not match its digest,
// so the next request fetches a good copy upstream.
func (s *Store) evictCorrupt(ctx context.Context, d digest.Digest, cause error) {
	s.log.Error("cached content is corrupt: evicted, the next request fetches it again", "digest", d, "err", cause)
	s.index.remove(d)
	s.manifests.remove(d)
	s.verified.forget(d)
	if err := s.driver.Delete(context.WithoutCancel(ctx), blobDir(d)); err != nil && !isPathNotFound(err) {
		s.log.Error("evict corrupt cached content", "digest", d, "err", err)
	}
}

// open opens the stored file of b from its first byte, with its identity.
func (b *Blob) open(ctx context.Context) (io.ReadCloser, fileIdentity, error) {
	rc, err := b.s.openData(ctx, b.d)
	if isPathNotFound(err) {
		// Deleted behind our back ('cache verify', an operator): forget
		// it, so the next request downloads it again.
		b.s.index.remove(b.d)
		b.s.verified.forget(b.d)
	}
	if err != nil {
		return nil, fileIdentity{}, fmt.Errorf("read cached blob %s: %w", b.d, err)
	}
	id, err := b.s.identity(ctx, b.d, rc)
	if err != nil {
		rc.Close()
		return nil, fileIdentity{}, err
	}
	if id.size != b.Size {
		rc.Close()
		err := fmt.Errorf("cached blob %s: %w: the file holds %d bytes, %d were stored", b.d, ErrDigestMismatch, id.size, b.Size)
		b.s.evictCorrupt(ctx, b.d, err)
		return nil, fileIdentity{}, err
	}
	return rc, id, nil
}

// openData opens d's stored file from its first byte. With the filesystem
// driver it is an os.Open of the file the driver would open: the driver's
// Reader costs as much CPU again as the open itself on a warm GET (a path
// check by regular expression, a trace span, a semaphore, a seek), and
// the path here is built from a digest the router validated. A missing
// file is the driver's PathNotFoundError either way.
func (s *Store) openData(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	if s.localRoot == "" {
		return s.driver.Reader(ctx, dataPath(d), 0)
	}
	f, err := os.Open(s.localPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, storagedriver.PathNotFoundError{Path: dataPath(d), DriverName: s.driver.Name()}
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}

// localPath is where the filesystem driver keeps d's data. On a
// slash-separated system it is the root and the driver path joined in one
// concatenation (the driver joins them the same way); filepath.Join would
// clean the result again on every GET.
func (s *Store) localPath(d digest.Digest) string {
	if filepath.Separator == '/' && s.localRootClean {
		hex := d.Encoded()
		return s.localRoot + "/blobs/" + string(d.Algorithm()) + "/" + hex[:2] + "/" + hex + "/data"
	}
	return filepath.Join(s.localRoot, filepath.FromSlash(dataPath(d)))
}

// Reader returns the whole blob. Once verified (see the top of this file)
// it is the file itself, an *os.File with the filesystem driver, so net/http
// can sendfile it; otherwise the bytes are hashed on their way out and the
// last one is held back until they matched. On a mismatch the file is
// evicted and the reader fails.
func (b *Blob) Reader(ctx context.Context) (io.ReadCloser, error) {
	rc, id, err := b.open(ctx)
	if err != nil {
		return nil, err
	}
	if !b.s.hashEveryRead && b.s.verified.has(b.d, id) {
		return rc, nil
	}
	if b.Size == 0 && b.d != b.d.Algorithm().FromBytes(nil) {
		// Nothing would be read, so nothing hashed: an empty file under
		// another digest is damage (what a power loss can leave of a
		// blob written just before it), caught here.
		rc.Close()
		err := fmt.Errorf("cached blob %s: %w: the file is empty", b.d, ErrDigestMismatch)
		b.s.evictCorrupt(ctx, b.d, err)
		return nil, err
	}
	return &verifyingReader{ctx: ctx, b: b, rc: rc, id: id, hash: b.d.Algorithm().Hash()}, nil
}

// RangeReader returns the blob from offset. A range cannot be checked by
// itself, so a file not verified yet (on remote storage: any object) is
// hashed whole first (one hash per digest at a time, however many requests
// wait for it).
func (b *Blob) RangeReader(ctx context.Context, offset int64) (io.ReadCloser, error) {
	if offset < 0 || offset > b.Size {
		return nil, fmt.Errorf("read cached blob %s at %d: outside its %d bytes", b.d, offset, b.Size)
	}
	rc, id, err := b.open(ctx)
	if err != nil {
		return nil, err
	}
	if b.s.hashEveryRead || !b.s.verified.has(b.d, id) {
		_, err, _ := b.s.verifying.Do(b.d.String(), func() (any, error) {
			return nil, b.verifyFile(context.WithoutCancel(ctx))
		})
		if err == nil && !b.s.verified.matches(b.d, id) {
			err = fmt.Errorf("cached blob %s changed while it was verified", b.d)
		}
		if err != nil {
			rc.Close()
			return nil, err
		}
	}
	if offset == 0 {
		return rc, nil
	}
	if sk, ok := rc.(io.Seeker); ok {
		if _, err := sk.Seek(offset, io.SeekStart); err != nil {
			rc.Close()
			return nil, fmt.Errorf("read cached blob %s at %d: %w", b.d, offset, err)
		}
		return rc, nil
	}
	rc.Close()
	rc, err = b.s.driver.Reader(ctx, dataPath(b.d), offset)
	if err != nil {
		return nil, fmt.Errorf("read cached blob %s at %d: %w", b.d, offset, err)
	}
	return rc, nil
}

// verifyFile hashes b's whole file; on a match it is remembered as
// verified, on a mismatch evicted.
func (b *Blob) verifyFile(ctx context.Context) error {
	rc, id, err := b.open(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := b.d.Algorithm().Hash()
	n, err := io.Copy(h, io.LimitReader(rc, b.Size))
	if err != nil {
		return fmt.Errorf("verify cached blob %s: %w", b.d, err)
	}
	got := digest.NewDigest(b.d.Algorithm(), h)
	if n != b.Size || got != b.d {
		err := fmt.Errorf("cached blob %s: %w: %d bytes hashing to %s", b.d, ErrDigestMismatch, n, got)
		b.s.evictCorrupt(ctx, b.d, err)
		return err
	}
	b.s.verified.add(b.d, id)
	return nil
}

// verifyingReader serves a stored blob while hashing it; the read that
// would hand out the last byte first checks the digest.
type verifyingReader struct {
	ctx  context.Context
	b    *Blob
	rc   io.ReadCloser
	id   fileIdentity
	hash hash.Hash
	n    int64 // bytes read from the file and hashed
	err  error // sticky
}

func (r *verifyingReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	left := r.b.Size - r.n
	if left == 0 {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), left)]
	n, err := r.rc.Read(p)
	r.hash.Write(p[:n])
	r.n += int64(n)
	if r.n == r.b.Size {
		if got := digest.NewDigest(r.b.d.Algorithm(), r.hash); got != r.b.d {
			r.err = fmt.Errorf("cached blob %s: %w: its bytes hash to %s", r.b.d, ErrDigestMismatch, got)
			r.b.s.evictCorrupt(r.ctx, r.b.d, r.err)
			return 0, r.err // the last bytes never leave
		}
		r.b.s.verified.add(r.b.d, r.id)
		return n, nil
	}
	if errors.Is(err, io.EOF) {
		r.err = fmt.Errorf("cached blob %s: %w: the file ended after %d of %d bytes", r.b.d, ErrDigestMismatch, r.n, r.b.Size)
		r.b.s.evictCorrupt(r.ctx, r.b.d, r.err)
		return 0, r.err
	}
	if err != nil {
		r.err = fmt.Errorf("read cached blob %s: %w", r.b.d, err)
		return n, r.err
	}
	return n, nil
}

func (r *verifyingReader) Close() error { return r.rc.Close() }
