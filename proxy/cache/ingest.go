package cache

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// ingest is a write in progress: a local spool file hashed as it is written.
// Nothing of it is visible under a digest until commit verified it.
type ingest struct {
	s      *Store
	f      *os.File
	path   string
	hasher digest.Digester
	n      int64
	// size is the size the upstream announced (0: unknown); reserved how
	// far the spool's blocks are allocated (reserve).
	size, reserved int64
	// spooled is what this ingest added to the store's spool count; it is
	// given back once, on cancel or commit.
	spooled int64
}

func (s *Store) newIngest(alg digest.Algorithm) (*ingest, error) {
	if !alg.Available() {
		return nil, fmt.Errorf("digest algorithm %s: %w", alg, digest.ErrDigestUnsupported)
	}
	f, err := s.spoolFile()
	if err != nil {
		return nil, err
	}
	return &ingest{s: s, f: f, path: f.Name(), hasher: alg.Digester()}, nil
}

// reserveStep is how far ahead of the writes a spool's disk blocks are
// allocated: far enough that the filesystem allocates in large extents
// instead of with every write (about a tenth of a cold pull's CPU here),
// near enough that an upstream announcing a large blob and sending
// nothing holds no more than this much disk.
const reserveStep = 64 << 20

// reserve allocates the spool's blocks up to reserveStep past what was
// written, within the announced size (0: unknown, nothing reserved); the
// file's size stays what was written. Best effort: a filesystem that
// cannot only misses the saving.
func (in *ingest) reserve(need int64) {
	if in.size <= 0 || need <= in.reserved || in.reserved >= in.size {
		return
	}
	end := min(in.size, need+reserveStep)
	rc, err := in.f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = unix.Fallocate(int(fd), unix.FALLOC_FL_KEEP_SIZE, in.reserved, end-in.reserved)
	})
	in.reserved = end
}

func (in *ingest) Write(p []byte) (int, error) {
	in.reserve(in.n + int64(len(p)))
	n, err := in.f.Write(p)
	in.hasher.Hash().Write(p[:n])
	in.n += int64(n)
	in.spooled += int64(n)
	in.s.spooled.Add(int64(n))
	if err != nil {
		return n, fmt.Errorf("write spool file: %w", err)
	}
	return n, nil
}

func (in *ingest) cancel() {
	in.f.Close()
	os.Remove(in.path)
	in.unspool()
}

// unspool takes this ingest's bytes off the store's spool count.
func (in *ingest) unspool() {
	in.s.spooled.Add(-in.spooled)
	in.spooled = 0
}

// commit verifies the bytes against want and moves them into place. With the
// filesystem driver that is one rename; other drivers get an upload that is
// moved into place once complete, so a reader never sees a partial object.
func (in *ingest) commit(ctx context.Context, want digest.Digest) error {
	if got := in.hasher.Digest(); got != want {
		in.cancel()
		return fmt.Errorf("%w: expected %s, got %s", ErrDigestMismatch, want, got)
	}
	// No fsync before the rename. A process that stops at any point
	// leaves the name on whole bytes (the page cache has them); only a
	// power loss can leave the name on a short or empty file, and such a
	// file is never served as complete: every stored blob is hashed again
	// on its first read by each process (verify.go), evicted on a
	// mismatch and fetched again, so a cache entry is at worst lost, never
	// wrong. The fsync was about 6 % of a cold pull's CPU (perf profile in
	// test/bench/README.md), and a download's goroutine waited on the disk
	// for every blob.
	if err := in.f.Close(); err != nil {
		os.Remove(in.path)
		in.unspool()
		return fmt.Errorf("close spool file: %w", err)
	}
	defer in.unspool()
	defer os.Remove(in.path) // no-op after a rename
	s := in.s
	if s.spoolRel != "" {
		if err := s.driver.Move(ctx, s.spoolRel+"/"+filepath.Base(in.path), dataPath(want)); err != nil {
			return fmt.Errorf("commit %s: %w", want, err)
		}
	} else if err := in.upload(ctx, want); err != nil {
		return err
	}
	// Committed from bytes hashed on their way in: already verified.
	s.rememberVerified(ctx, want)
	in.unspool() // before add, so the bytes are never counted twice
	s.index.add(want, in.n)
	s.evict(ctx)
	return nil
}

func (in *ingest) upload(ctx context.Context, want digest.Digest) error {
	s := in.s
	f, err := os.Open(in.path)
	if err != nil {
		return fmt.Errorf("reopen spool file: %w", err)
	}
	defer f.Close()
	dir := s.uploadDir + "/" + filepath.Base(in.path)
	tmp := dir + "/data"
	w, err := s.driver.Writer(ctx, tmp, false)
	if err != nil {
		return fmt.Errorf("upload %s: %w", want, err)
	}
	if _, err := io.Copy(w, f); err != nil {
		_ = w.Cancel(ctx)
		return fmt.Errorf("upload %s: %w", want, err)
	}
	if err := w.Commit(ctx); err != nil {
		_ = w.Cancel(ctx)
		return fmt.Errorf("upload %s: %w", want, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("upload %s: %w", want, err)
	}
	if err := s.driver.Move(ctx, tmp, dataPath(want)); err != nil {
		if derr := s.driver.Delete(context.WithoutCancel(ctx), dir); derr != nil && !isPathNotFound(derr) {
			s.log.Warn("delete failed upload", "path", dir, "err", derr)
		}
		return fmt.Errorf("commit %s: %w", want, err)
	}
	return nil
}
