package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/opencontainers/go-digest"
)

// Every test runs against each driver: the filesystem commits by rename,
// the others through an upload that is moved into place.
var drivers = []string{"filesystem", "inmemory"}

func openStore(t *testing.T, driver, dir string, maxBytes int64) *Store {
	t.Helper()
	cfg := Config{Driver: driver, MaxBytes: maxBytes, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if driver == "filesystem" {
		cfg.Parameters = map[string]any{"rootdirectory": filepath.Join(dir, "cache")}
	} else {
		cfg.SpoolDir = filepath.Join(dir, "spool")
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitIndexed(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// slowSource serves body in small pieces with pauses, so readers overlap.
func slowSource(body []byte, calls *atomic.Int64) Source {
	return func(ctx context.Context) (io.ReadCloser, int64, error) {
		calls.Add(1)
		pr, pw := io.Pipe()
		go func() {
			for off := 0; off < len(body); off += 64 << 10 {
				if _, err := pw.Write(body[off:min(off+64<<10, len(body))]); err != nil {
					return
				}
				time.Sleep(time.Millisecond)
			}
			pw.Close()
		}()
		return pr, int64(len(body)), nil
	}
}

func readAll(t *testing.T, h *Handle) ([]byte, error) {
	rc, err := h.Reader(context.Background())
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func TestManifests(t *testing.T) {
	for _, drv := range drivers {
		t.Run(drv, func(t *testing.T) {
			s := openStore(t, drv, t.TempDir(), 0)
			ctx := context.Background()
			body := []byte(`{"schemaVersion":2}`)
			d := digest.FromBytes(body)
			if _, _, err := s.Manifest(ctx, d); !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing manifest: %v", err)
			}
			if err := s.PutManifest(ctx, digest.FromString("other"), "x", body); !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("mismatched put: %v", err)
			}
			if err := s.PutManifest(ctx, d, "application/vnd.oci.image.manifest.v1+json", body); err != nil {
				t.Fatal(err)
			}
			got, mt, err := s.Manifest(ctx, d)
			if err != nil || !bytes.Equal(got, body) || mt != "application/vnd.oci.image.manifest.v1+json" {
				t.Fatalf("got %q %q %v", got, mt, err)
			}
		})
	}
}

func TestCoalescedDownload(t *testing.T) {
	for _, drv := range drivers {
		t.Run(drv, func(t *testing.T) {
			s := openStore(t, drv, t.TempDir(), 0)
			f := NewFetcher(s, time.Minute, 10*time.Second, s.log)
			body := randomBytes(3<<20, 1)
			d := digest.FromBytes(body)
			var calls atomic.Int64
			var wg sync.WaitGroup
			sources := make([]string, 12)
			for i := range 12 {
				wg.Go(func() {
					h, err := f.Open(context.Background(), d, -1, slowSource(body, &calls))
					if err != nil {
						t.Error(err)
						return
					}
					defer h.Close()
					sources[i] = h.Source
					got, err := readAll(t, h)
					if err != nil || !bytes.Equal(got, body) {
						t.Errorf("reader %d: %d bytes, %v", i, len(got), err)
					}
				})
			}
			wg.Wait()
			if n := calls.Load(); n != 1 {
				t.Fatalf("upstream opened %d times, want 1 (sources %v)", n, sources)
			}
			waitCommitted(t, s, d)
			h, err := f.Open(context.Background(), d, -1, slowSource(body, &calls))
			if err != nil || h.Source != SourceHit {
				t.Fatalf("after the download: %v, source %v", err, h)
			}
			got, err := readAll(t, h)
			h.Close()
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("cached read: %d bytes, %v", len(got), err)
			}
		})
	}
}

func TestCorruptDownloadNeverCompletesNorCommits(t *testing.T) {
	for _, drv := range drivers {
		t.Run(drv, func(t *testing.T) {
			s := openStore(t, drv, t.TempDir(), 0)
			f := NewFetcher(s, time.Minute, 10*time.Second, s.log)
			body := randomBytes(1<<20, 2)
			d := digest.FromBytes(body)
			bad := bytes.Clone(body)
			bad[len(bad)/2] ^= 0xff
			var calls atomic.Int64
			h, err := f.Open(context.Background(), d, -1, slowSource(bad, &calls))
			if err != nil {
				t.Fatal(err)
			}
			got, err := readAll(t, h)
			h.Close()
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("read of corrupt download: %v", err)
			}
			if len(got) >= len(body) {
				t.Fatalf("reader received all %d bytes of a body that failed verification", len(got))
			}
			if _, err := s.Stat(context.Background(), d); !errors.Is(err, ErrNotFound) {
				t.Fatalf("corrupt blob committed: %v", err)
			}
		})
	}
}

func TestSourceErrorReachesEveryWaiter(t *testing.T) {
	s := openStore(t, "filesystem", t.TempDir(), 0)
	f := NewFetcher(s, time.Minute, 10*time.Second, s.log)
	boom := errors.New("upstream says no")
	release := make(chan struct{})
	src := func(ctx context.Context) (io.ReadCloser, int64, error) {
		<-release
		return nil, 0, boom
	}
	d := digest.FromString("x")
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if _, err := f.Open(context.Background(), d, -1, src); !errors.Is(err, boom) {
				t.Errorf("waiter got %v", err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if f.InFlight(d) {
		t.Fatal("failed download still in flight: later requests could never retry")
	}
}

func TestStalledUpstreamIsAbandoned(t *testing.T) {
	s := openStore(t, "filesystem", t.TempDir(), 0)
	f := NewFetcher(s, time.Minute, 200*time.Millisecond, s.log)
	body := randomBytes(1000, 3)
	src := func(ctx context.Context) (io.ReadCloser, int64, error) {
		pr, pw := io.Pipe()
		go func() {
			pw.Write(body[:10])
			<-ctx.Done() // then nothing: a stalled upstream
			pw.CloseWithError(ctx.Err())
		}()
		return pr, int64(len(body)), nil
	}
	h, err := f.Open(context.Background(), digest.FromBytes(body), -1, src)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	began := time.Now()
	if _, err := readAll(t, h); err == nil {
		t.Fatal("stalled download read to the end")
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("stall detected after %v", took)
	}
}

func TestEvictionSparesPinnedBlobs(t *testing.T) {
	for _, drv := range drivers {
		t.Run(drv, func(t *testing.T) {
			s := openStore(t, drv, t.TempDir(), 250<<10)
			f := NewFetcher(s, time.Minute, 10*time.Second, s.log)
			ctx := context.Background()
			var calls atomic.Int64
			put := func(seed uint64) digest.Digest {
				body := randomBytes(100<<10, seed)
				h, err := f.Open(ctx, digest.FromBytes(body), -1, slowSource(body, &calls))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := readAll(t, h); err != nil {
					t.Fatal(err)
				}
				h.Close()
				waitCommitted(t, s, digest.FromBytes(body))
				return digest.FromBytes(body)
			}
			a := put(10)
			pinned, err := s.Open(ctx, a) // a client is still reading a
			if err != nil {
				t.Fatal(err)
			}
			b := put(11)
			c := put(12) // 300 KiB > 250 KiB: something must go, and a is pinned
			// Checked without touching the LRU order: a Stat counts as a use.
			if !stored(t, s, a) {
				t.Fatal("pinned blob evicted")
			}
			if stored(t, s, b) {
				t.Fatal("b should have been evicted")
			}
			pinned.Close()
			put(13) // a is now the least recently used, unpinned
			if stored(t, s, a) {
				t.Fatal("a should have been evicted once unpinned")
			}
			if !stored(t, s, c) {
				t.Fatal("c evicted")
			}
			if s.Bytes() > 250<<10 {
				t.Fatalf("cache holds %d bytes", s.Bytes())
			}
		})
	}
}

// stored reports whether d is on the driver, without using it.
func stored(t *testing.T, s *Store, d digest.Digest) bool {
	t.Helper()
	_, err := s.driver.Stat(context.Background(), dataPath(d))
	if err != nil && !isPathNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func waitCommitted(t *testing.T, s *Store, d digest.Digest) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.index.mu.Lock()
		_, ok := s.index.entries[d]
		s.index.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never committed", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestReopenIndexesAndClearsSpool(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, "filesystem", dir, 0)
	f := NewFetcher(s, time.Minute, 10*time.Second, s.log)
	body := randomBytes(200<<10, 4)
	d := digest.FromBytes(body)
	var calls atomic.Int64
	h, err := f.Open(context.Background(), d, -1, slowSource(body, &calls))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, h)
	h.Close()
	waitCommitted(t, s, d)
	leftover := filepath.Join(dir, "cache", spoolName, "ingest-crashed")
	if err := os.WriteFile(leftover, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}

	s2 := openStore(t, "filesystem", dir, 0)
	if s2.Bytes() != int64(len(body)) {
		t.Fatalf("reopened store indexed %d bytes, want %d", s2.Bytes(), len(body))
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatal("spool leftover survived a restart")
	}
}
