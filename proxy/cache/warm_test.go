package cache

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// A warm read of a verified blob on the filesystem is the file itself (so
// net/http can sendfile it) and costs no more than opening and stat-ing
// it: the storage driver's Reader (regular expression path check, trace
// span, semaphore, seek) is not on this path. A read allocates 7 times
// (path, os.Open, File.Stat, the pin); through the driver it took 18.
func TestWarmReadIsTheFileAlone(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, fsConfig(t.TempDir()), 0)
	d := putBlob(t, s, randomBytes(64<<10, 7))

	// Past the racy window, one whole read verifies the file for good.
	time.Sleep(racyWindow + 50*time.Millisecond)
	b, err := s.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := b.Reader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	b.Close()

	read := func() {
		b, err := s.Open(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := b.Reader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := rc.(*os.File); !ok {
			t.Fatalf("warm reader is %T, want *os.File", rc)
		}
		rc.Close()
		b.Close()
	}
	read()
	const maxAllocs = 9
	if n := testing.AllocsPerRun(50, read); n > maxAllocs {
		t.Errorf("a warm read allocates %.0f times, want at most %d", n, maxAllocs)
	}
}

// A stored file deleted behind the store's back (an operator, 'cache
// verify') is forgotten on the next read, so the next request downloads it
// again, as through the driver.
func TestWarmReadOfDeletedFileForgetsIt(t *testing.T) {
	ctx := context.Background()
	s := openStore(t, fsConfig(t.TempDir()), 0)
	d := putBlob(t, s, randomBytes(4<<10, 8))
	if err := os.Remove(blobFile(s, d)); err != nil {
		t.Fatal(err)
	}
	b, err := s.Open(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rc, err := b.Reader(ctx)
	if err == nil {
		rc.Close()
		t.Fatal("Reader of a deleted file succeeded")
	}
	if !isPathNotFound(err) {
		t.Errorf("Reader of a deleted file: %v, want the driver's PathNotFoundError", err)
	}
	if s.Has(d) {
		t.Error("the deleted blob is still indexed")
	}
	if _, err := s.Open(ctx, d); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open after the failed read: %v, want ErrNotFound", err)
	}
}

// The warm path's file name is the one the filesystem driver uses, for any
// root the configuration may give.
func TestLocalPathIsTheDriversPath(t *testing.T) {
	d := digest.FromString("layer")
	hex := d.Encoded()
	for _, root := range []string{"/var/lib/portcullis/cache", "/data/", "portcullis-data/cache", "./cache", "/a//b/../c", "/"} {
		s, err := Open(context.Background(), Config{Parameters: map[string]any{"rootdirectory": filepath.Join(t.TempDir(), root)}})
		if err != nil {
			t.Fatal(err)
		}
		s.localRoot = root // what the path is built from; Open needed a writable one
		s.localRootClean = joinsByConcatenation(root)
		want := filepath.Join(root, "blobs", "sha256", hex[:2], hex, "data")
		if got := s.localPath(d); got != want {
			t.Errorf("root %q: %q, want %q", root, got, want)
		}
	}
}
