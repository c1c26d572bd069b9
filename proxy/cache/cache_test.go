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

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/s3-aws"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/test/s3server"
)

// testDriver is one storage driver the conformance tests run against.
type testDriver struct {
	name string
	// persistent: what one Open stored is there for the next Open of the
	// same Config (the inmemory driver lives and dies with its Store).
	persistent bool
	// config returns a Config on fresh, empty storage; dir is the test's
	// temporary directory.
	config func(t *testing.T, dir string) Config
}

// testDrivers are the drivers every conformance test runs against: the
// filesystem commits by rename, the others through an upload that is moved
// into place; s3 is a real S3 server (versitygw) on loopback, one bucket
// per test.
func testDrivers(t *testing.T) []testDriver {
	var server *s3server.Server // started by the first s3 test that needs it
	return []testDriver{
		{name: "filesystem", persistent: true, config: func(t *testing.T, dir string) Config {
			return Config{Driver: "filesystem", Parameters: map[string]any{"rootdirectory": filepath.Join(dir, "cache")}}
		}},
		{name: "inmemory", config: func(t *testing.T, dir string) Config {
			return Config{Driver: "inmemory", SpoolDir: filepath.Join(dir, "spool")}
		}},
		{name: "s3", persistent: true, config: func(st *testing.T, dir string) Config {
			if server == nil {
				server = s3server.Start(t) // lives until the parent test ends
			}
			return Config{Driver: "s3", Parameters: server.ParametersFor(server.NewBucket(st)), SpoolDir: filepath.Join(dir, "spool")}
		}},
	}
}

// forEachDriver runs test once per driver, each on fresh, empty storage.
func forEachDriver(t *testing.T, test func(t *testing.T, drv testDriver, cfg Config)) {
	for _, drv := range testDrivers(t) {
		t.Run(drv.name, func(t *testing.T) {
			cfg := drv.config(t, t.TempDir())
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			test(t, drv, cfg)
		})
	}
}

// openStore opens cfg (with maxBytes) and waits for its start-up index.
func openStore(t testing.TB, cfg Config, maxBytes int64) *Store {
	t.Helper()
	cfg.MaxBytes = maxBytes
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
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

// fsConfig is a filesystem Config under dir, for tests of what only the
// local filesystem does (sendfile, file identities).
func fsConfig(dir string) Config {
	return Config{Parameters: map[string]any{"rootdirectory": filepath.Join(dir, "cache")}}
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
	forEachDriver(t, func(t *testing.T, drv testDriver, cfg Config) {
		s := openStore(t, cfg, 0)
		ctx := context.Background()
		body := []byte(`{"schemaVersion":2}`)
		d := digest.FromBytes(body)
		if _, _, err := s.Manifest(ctx, d); !errors.Is(err, ErrNotFound) {
			t.Fatalf("missing manifest: %v", err)
		}
		if err := s.PutManifest(ctx, digest.FromString("other"), "x", body); !errors.Is(err, ErrDigestMismatch) {
			t.Fatalf("mismatched put: %v", err)
		}
		if stored(t, s, digest.FromString("other")) {
			t.Fatal("mismatched manifest stored")
		}
		if err := s.PutManifest(ctx, d, "application/vnd.oci.image.manifest.v1+json", body); err != nil {
			t.Fatal(err)
		}
		got, mt, err := s.Manifest(ctx, d)
		if err != nil || !bytes.Equal(got, body) || mt != "application/vnd.oci.image.manifest.v1+json" {
			t.Fatalf("got %q %q %v", got, mt, err)
		}
		if drv.persistent { // read back from storage, not from memory
			got, mt, err := openStore(t, cfg, 0).Manifest(ctx, d)
			if err != nil || !bytes.Equal(got, body) || mt != "application/vnd.oci.image.manifest.v1+json" {
				t.Fatalf("after a reopen: got %q %q %v", got, mt, err)
			}
		}
	})
}

func TestCoalescedDownload(t *testing.T) {
	forEachDriver(t, func(t *testing.T, drv testDriver, cfg Config) {
		s := openStore(t, cfg, 0)
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

func TestCorruptDownloadNeverCompletesNorCommits(t *testing.T) {
	forEachDriver(t, func(t *testing.T, drv testDriver, cfg Config) {
		s := openStore(t, cfg, 0)
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
		waitDownloadEnded(t, f, d)
		if _, err := s.Stat(context.Background(), d); !errors.Is(err, ErrNotFound) {
			t.Fatalf("corrupt blob committed: %v", err)
		}
		assertNothingStored(t, s)
	})
}

// A download cut mid-way (the upstream connection breaks) leaves nothing
// under the digest, nothing half-uploaded and nothing in the spool, and
// the next request downloads it afresh.
func TestCutDownloadLeavesNothing(t *testing.T) {
	forEachDriver(t, func(t *testing.T, drv testDriver, cfg Config) {
		s := openStore(t, cfg, 0)
		f := NewFetcher(s, time.Minute, 10*time.Second, s.log)
		body := randomBytes(2<<20, 5)
		d := digest.FromBytes(body)
		cut := func(ctx context.Context) (io.ReadCloser, int64, error) {
			pr, pw := io.Pipe()
			go func() {
				pw.Write(body[:len(body)/2])
				pw.CloseWithError(io.ErrUnexpectedEOF) // the connection broke
			}()
			return pr, int64(len(body)), nil
		}
		h, err := f.Open(context.Background(), d, -1, cut)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAll(t, h)
		h.Close()
		if err == nil || len(got) >= len(body) {
			t.Fatalf("read of a cut download: %d bytes, %v", len(got), err)
		}
		waitDownloadEnded(t, f, d)
		if stored(t, s, d) {
			t.Fatal("a cut download left an object under its digest")
		}
		assertNothingStored(t, s)
		if n := spoolEntries(t, s); n != 0 {
			t.Fatalf("%d spool files left", n)
		}
		var calls atomic.Int64
		h, err = f.Open(context.Background(), d, -1, slowSource(body, &calls))
		if err != nil {
			t.Fatal(err)
		}
		got, err = readAll(t, h)
		h.Close()
		if err != nil || !bytes.Equal(got, body) || calls.Load() != 1 || h.Source != SourceMiss {
			t.Fatalf("retry: %d bytes, %v, %d upstream calls, source %s", len(got), err, calls.Load(), h.Source)
		}
		// The bytes are out before the commit ends; let it end.
		waitDownloadEnded(t, f, d)
	})
}

func TestSourceErrorReachesEveryWaiter(t *testing.T) {
	forEachDriver(t, func(t *testing.T, drv testDriver, cfg Config) {
		s := openStore(t, cfg, 0)
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
	})
}

func TestStalledUpstreamIsAbandoned(t *testing.T) {
	forEachDriver(t, func(t *testing.T, drv testDriver, cfg Config) {
		s := openStore(t, cfg, 0)
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
		waitDownloadEnded(t, f, digest.FromBytes(body))
		assertNothingStored(t, s)
	})
}

func TestEvictionSparesPinnedBlobs(t *testing.T) {
	forEachDriver(t, func(t *testing.T, drv testDriver, cfg Config) {
		s := openStore(t, cfg, 250<<10)
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
		// The pinned blob still reads whole while others are evicted.
		rc, err := pinned.Reader(ctx)
		if err != nil {
			t.Fatalf("pinned blob: %v", err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, randomBytes(100<<10, 10)) {
			t.Fatalf("pinned blob read %d bytes, %v", len(got), err)
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
	forEachDriver(t, func(t *testing.T, drv testDriver, cfg Config) {
		s := openStore(t, cfg, 0)
		body := putBlob(t, s, randomBytes(200<<10, 4))
		leftover := filepath.Join(s.spoolDir, "ingest-crashed")
		if err := os.WriteFile(leftover, []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}

		s2 := openStore(t, cfg, 0)
		if want := int64(200 << 10); drv.persistent && s2.Bytes() != want {
			t.Fatalf("reopened store indexed %d bytes, want %d", s2.Bytes(), want)
		}
		if drv.persistent && !s2.Has(body) {
			t.Fatalf("reopened store did not index %s", body)
		}
		if _, err := os.Stat(leftover); !os.IsNotExist(err) {
			t.Fatal("spool leftover survived a restart")
		}
	})
}

// waitDownloadEnded waits until d's download left the in-flight table:
// whatever it did to storage is done by then.
func waitDownloadEnded(t testing.TB, f *Fetcher, d digest.Digest) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); f.InFlight(d); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("download never ended")
		}
	}
}

// assertNothingStored checks, on the driver itself, that no object exists
// under /blobs (nothing visible under any digest) nor under /_uploads
// (no upload left behind).
func assertNothingStored(t *testing.T, s *Store) {
	t.Helper()
	for _, root := range []string{"/blobs", "/_uploads"} {
		var found []string
		err := s.driver.Walk(context.Background(), root, func(fi storagedriver.FileInfo) error {
			if !fi.IsDir() {
				found = append(found, fi.Path())
			}
			return nil
		})
		if err != nil && !isPathNotFound(err) {
			t.Fatalf("walk %s: %v", root, err)
		}
		if len(found) > 0 {
			t.Fatalf("storage holds %v", found)
		}
	}
}
