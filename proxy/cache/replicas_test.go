package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/test/s3server"
)

// gate pauses a storage operation: the operation closes reached and waits
// for release.
type gate struct {
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func newGate() *gate { return &gate{reached: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) pass() {
	if g == nil {
		return
	}
	g.once.Do(func() { close(g.reached) })
	<-g.release
}

func (g *gate) waitReached(t *testing.T, what string) {
	t.Helper()
	select {
	case <-g.reached:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s never reached", what)
	}
}

// pausingDriver is a real driver whose upload commits and moves can be held
// at a gate, so a test sees the storage exactly between two steps of a
// commit.
type pausingDriver struct {
	storagedriver.StorageDriver
	beforeCommit *gate // an upload's parts are sent, the upload not completed
	beforeMove   *gate // the upload is a complete object, not moved into place
}

func (d *pausingDriver) Writer(ctx context.Context, path string, appendMode bool) (storagedriver.FileWriter, error) {
	w, err := d.StorageDriver.Writer(ctx, path, appendMode)
	if err != nil {
		return nil, err
	}
	return &pausingWriter{FileWriter: w, before: d.beforeCommit}, nil
}

func (d *pausingDriver) Move(ctx context.Context, from, to string) error {
	d.beforeMove.pass()
	return d.StorageDriver.Move(ctx, from, to)
}

type pausingWriter struct {
	storagedriver.FileWriter
	before *gate
}

func (w *pausingWriter) Commit(ctx context.Context) error {
	w.before.pass()
	return w.FileWriter.Commit(ctx)
}

// replica opens a Store on the shared bucket with a spool of its own, as
// a second portcullis process with another --data would.
func replica(t *testing.T, params map[string]any) *Store {
	t.Helper()
	return openStore(t, Config{
		Driver:     "s3",
		Parameters: params,
		SpoolDir:   filepath.Join(t.TempDir(), "spool"),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, 0)
}

// Two replicas on one bucket see each other's committed blobs and never a
// partial one: while one uploads (parts sent, upload completed but not yet
// moved into place) the other finds nothing under the digest, and a third
// replica starting meanwhile does not break the upload.
func TestReplicasShareCommittedBlobsOnly(t *testing.T) {
	srv := s3server.Start(t)
	params := srv.Parameters()
	a, b := replica(t, params), replica(t, params)
	ctx := context.Background()

	// Committed by a: b serves it, verified, without any upstream.
	body := randomBytes(300<<10, 50)
	d := putBlob(t, a, body)
	fb := NewFetcher(b, time.Minute, 10*time.Second, b.log)
	h, err := fb.Open(ctx, d, -1, func(context.Context) (io.ReadCloser, int64, error) {
		return nil, 0, errors.New("b went upstream for a blob a committed")
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := readAll(t, h)
	h.Close()
	if err != nil || !bytes.Equal(got, body) || h.Source != SourceHit {
		t.Fatalf("b read a's blob: %d bytes, %v, source %s", len(got), err, h.Source)
	}

	// A blob over one upload part (the driver's 10 MiB chunk), so the
	// upload really is in several pieces when it is paused.
	big := randomBytes(12<<20, 51)
	bd := digest.FromBytes(big)
	pd := &pausingDriver{StorageDriver: a.driver, beforeCommit: newGate(), beforeMove: newGate()}
	a.driver = pd
	fa := NewFetcher(a, time.Minute, 10*time.Second, a.log)
	var calls atomic.Int64
	h, err = fa.Open(ctx, bd, int64(len(big)), slowSource(big, &calls))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	notVisible := func(when string) {
		t.Helper()
		if _, err := b.Stat(ctx, bd); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s: b sees the blob: %v", when, err)
		}
		if _, err := b.driver.Stat(ctx, dataPath(bd)); !isPathNotFound(err) {
			t.Fatalf("%s: an object is under the digest: %v", when, err)
		}
	}
	pd.beforeCommit.waitReached(t, "upload commit")
	notVisible("parts uploaded")
	close(pd.beforeCommit.release)

	pd.beforeMove.waitReached(t, "move into place")
	notVisible("upload complete, not moved")
	// A replica starting now clears what crashed processes left, not
	// this upload.
	c := replica(t, params)
	close(pd.beforeMove.release)

	waitCommitted(t, a, bd)
	for name, s := range map[string]*Store{"b": b, "c": c} {
		blob, err := s.Open(ctx, bd)
		if err != nil {
			t.Fatalf("%s after a committed: %v", name, err)
		}
		rc, err := blob.Reader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		blob.Close()
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("%s read the blob a committed: %d bytes, %v", name, len(got), err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("upstream opened %d times", n)
	}
}

// What a crashed process left under the uploads (older than any upload
// may take) is cleared when a replica starts; a recent upload, maybe
// another replica's in progress, is left alone.
func TestStartClearsOnlyStaleUploads(t *testing.T) {
	srv := s3server.Start(t)
	params := srv.Parameters()
	a := replica(t, params)
	ctx := context.Background()
	stale, fresh := uploadsRoot+"/deadbeef/ingest-1/data", uploadsRoot+"/0123abcd/ingest-2/data"
	for _, p := range []string{stale, fresh} {
		if err := a.driver.PutContent(ctx, p, []byte("half of something")); err != nil {
			t.Fatal(err)
		}
	}
	// The server's posix backend reports a file's modification time.
	old := time.Now().Add(-2 * staleUploadAge)
	if err := os.Chtimes(filepath.Join(srv.Root, srv.Bucket, filepath.FromSlash(stale)), old, old); err != nil {
		t.Fatal(err)
	}
	if fi, err := a.driver.Stat(ctx, stale); err != nil || fi.ModTime().After(old.Add(time.Minute)) {
		t.Fatalf("stale upload's age not seen through the driver: %v, %v", fi, err)
	}
	replica(t, params)
	if _, err := a.driver.Stat(ctx, stale); !isPathNotFound(err) {
		t.Fatalf("stale upload survived a start: %v", err)
	}
	if _, err := a.driver.Stat(ctx, fresh); err != nil {
		t.Fatalf("recent upload deleted by a start: %v", err)
	}
}
