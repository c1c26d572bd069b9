package badfiles

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
)

// ForWalk adapts the inspector to the scanner's per-file hook
// (scanner.WithFileInspector): prepared before each scan (its cache key
// names the signature set and clamd's version then), and every error it
// meets fails the scan (scanner.ErrCannotJudge): a check that could not
// run must not pass a file.
func (i *Inspector) ForWalk() scanner.FileInspector { return &walkInspector{i: i} }

type walkInspector struct {
	i   *Inspector
	key atomic.Pointer[string] // the cache key of the last Prepare
}

func (w *walkInspector) Prepare(ctx context.Context) error {
	key, err := w.i.CacheKey(ctx)
	if err != nil {
		return err
	}
	w.key.Store(&key)
	return nil
}

func (w *walkInspector) CacheKey() string {
	if k := w.key.Load(); k != nil {
		return *k
	}
	return "badfiles/unprepared"
}

func (w *walkInspector) Wants(f scanner.InspectedFile) bool { return w.i.Wants(f.Size) }

func (w *walkInspector) MaxSize() int64 { return w.i.MaxSize() }

func (w *walkInspector) Inspect(ctx context.Context, f scanner.InspectedFile, r io.Reader) ([]vulndb.Finding, bool, error) {
	found, err := w.i.Inspect(ctx, f.Path, f.Layer, f.Size, r)
	if err != nil {
		return found, false, fmt.Errorf("%w: %w", scanner.ErrCannotJudge, err)
	}
	return found, false, nil
}

// ForWalk adapts a one-scan Checker to the scanner's per-file hook, for
// 'portcullis scan', which holds the database open for its one scan (no
// layer cache: the key only has to be stable). maxSize is the largest file
// to read: scan.hash_max_file, or scan.clamd_max_file if larger with clamd.
func (c *Checker) ForWalk(maxSize int64) scanner.FileInspector {
	return &checkerInspector{c: c, maxSize: maxSize}
}

type checkerInspector struct {
	c       *Checker
	maxSize int64
}

func (ci *checkerInspector) CacheKey() string { return "badfiles/checker" }

func (ci *checkerInspector) MaxSize() int64 { return ci.maxSize }

// Wants reads a file whose plan could not be made, so that Inspect meets
// the error again and fails the scan.
func (ci *checkerInspector) Wants(f scanner.InspectedFile) bool {
	ok, err := ci.c.Wants(f.Size)
	return ok || err != nil
}

func (ci *checkerInspector) Inspect(ctx context.Context, f scanner.InspectedFile, r io.Reader) ([]vulndb.Finding, bool, error) {
	found, err := ci.c.Check(ctx, f.Path, f.Layer, f.Size, r)
	if err != nil {
		return found, false, fmt.Errorf("%w: %w", scanner.ErrCannotJudge, err)
	}
	return found, false, nil
}
