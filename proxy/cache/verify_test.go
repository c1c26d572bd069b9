package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// endlessSource streams zeros until the reader stops, announcing size
// (-1: no Content-Length); sent counts what it handed out.
func endlessSource(size int64, sent *atomic.Int64) Source {
	return func(ctx context.Context) (io.ReadCloser, int64, error) {
		return io.NopCloser(&countingZeros{sent: sent}), size, nil
	}
}

type countingZeros struct{ sent *atomic.Int64 }

func (z *countingZeros) Read(p []byte) (int, error) {
	clear(p)
	z.sent.Add(int64(len(p)))
	return len(p), nil
}

// spoolEntries counts the files in s's spool other than its spares (which
// must be empty). Nothing may be downloading.
func spoolEntries(t *testing.T, s *Store) int {
	t.Helper()
	spares := map[string]bool{}
	for range len(s.spares) {
		f := <-s.spares
		spares[filepath.Base(f.Name())] = true
		defer func() { s.spares <- f }()
	}
	entries, err := os.ReadDir(s.spoolDir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if !spares[e.Name()] {
			n++
			continue
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() != 0 {
			t.Fatalf("spare spool file %s holds %d bytes", e.Name(), info.Size())
		}
	}
	return n
}

func TestDownloadStopsAtItsBound(t *testing.T) {
	const maxBlob = 1 << 20
	tests := []struct {
		name      string
		declared  int64 // -1: unknown
		announced int64 // upstream Content-Length, -1: none
		bound     int64
		openFails bool // refused before any byte is read
	}{
		{name: "endless body, no size known", declared: -1, announced: -1, bound: maxBlob},
		{name: "endless body past the declared size", declared: 300 << 10, announced: -1, bound: 300 << 10},
		{name: "lying Content-Length", declared: -1, announced: 100, bound: 100},
		{name: "Content-Length over max_blob_size", declared: -1, announced: maxBlob + 1, openFails: true},
		{name: "Content-Length over the declared size", declared: 1000, announced: 2000, openFails: true},
		{name: "declared size over max_blob_size", declared: maxBlob + 1, announced: -1, openFails: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			forEachDriver(t, func(t *testing.T, drv testDriver, cfg Config) {
				cfg.MaxBlobSize = maxBlob
				s := openStore(t, cfg, 0)
				f := NewFetcher(s, time.Minute, 10*time.Second, s.log)
				d := digest.FromString(tc.name)
				var sent atomic.Int64
				h, err := f.Open(context.Background(), d, tc.declared, endlessSource(tc.announced, &sent))
				if tc.openFails {
					if !errors.Is(err, ErrTooLarge) {
						t.Fatalf("open: %v, want ErrTooLarge", err)
					}
					if n := sent.Load(); n != 0 {
						t.Fatalf("read %d bytes of a body refused by its size", n)
					}
				} else {
					if err != nil {
						t.Fatal(err)
					}
					got, err := readAll(t, h)
					h.Close()
					if !errors.Is(err, ErrTooLarge) && tc.announced < 0 {
						t.Fatalf("read: %v after %d bytes, want ErrTooLarge", err, len(got))
					}
					if err == nil {
						t.Fatalf("read of an oversized body succeeded with %d bytes", len(got))
					}
					// Read sizes are one chunk at most: it stopped near the bound.
					if n := sent.Load(); n > tc.bound+largeReadBuffer {
						t.Fatalf("upstream sent %d bytes, bound %d", n, tc.bound)
					}
				}
				for deadline := time.Now().Add(10 * time.Second); f.InFlight(d); time.Sleep(5 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("download never ended")
					}
				}
				if n := spoolEntries(t, s); n != 0 {
					t.Fatalf("%d spool files left", n)
				}
				if stored(t, s, d) {
					t.Fatal("oversized blob committed")
				}
				if n := s.spooled.Load(); n != 0 {
					t.Fatalf("spool count %d after the download ended, want 0", n)
				}
				assertNothingStored(t, s)
			})
		})
	}
}

func TestSpoolCountsTowardMaxBytes(t *testing.T) {
	forEachDriver(t, func(t *testing.T, drv testDriver, cfg Config) {
		s := openStore(t, cfg, 250<<10)
		f := NewFetcher(s, time.Minute, 10*time.Second, s.log)
		var calls atomic.Int64
		old := randomBytes(100<<10, 20)
		h, err := f.Open(context.Background(), digest.FromBytes(old), -1, slowSource(old, &calls))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, h)
		h.Close()
		waitCommitted(t, s, digest.FromBytes(old))

		// A 200 KiB download that pauses before its end: stored 100 KiB plus
		// 200 KiB in the spool is over the bound before anything commits.
		big := randomBytes(200<<10, 21)
		release := make(chan struct{})
		src := func(ctx context.Context) (io.ReadCloser, int64, error) {
			pr, pw := io.Pipe()
			go func() {
				pw.Write(big[:len(big)-1])
				select {
				case <-release:
					pw.Write(big[len(big)-1:])
					pw.Close()
				case <-ctx.Done():
					pw.CloseWithError(ctx.Err())
				}
			}()
			return pr, int64(len(big)), nil
		}
		h, err = f.Open(context.Background(), digest.FromBytes(big), -1, src)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		defer close(release)
		for deadline := time.Now().Add(10 * time.Second); stored(t, s, digest.FromBytes(old)); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("stored blob kept while the spool (%d bytes) pushes the cache over max_bytes", s.spooled.Load())
			}
		}
	})
}

// putBlob downloads body into s through a fetcher and waits for the commit.
func putBlob(t *testing.T, s *Store, body []byte) digest.Digest {
	t.Helper()
	f := NewFetcher(s, time.Minute, 10*time.Second, s.log)
	var calls atomic.Int64
	d := digest.FromBytes(body)
	h, err := f.Open(context.Background(), d, int64(len(body)), slowSource(body, &calls))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(t, h); err != nil {
		t.Fatal(err)
	}
	h.Close()
	waitCommitted(t, s, d)
	return d
}

func blobFile(s *Store, d digest.Digest) string {
	return filepath.Join(s.localRoot, filepath.FromSlash(dataPath(d)))
}

func flipByte(t *testing.T, path string, at int64, keepTimes bool) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if keepTimes { // an edit that hides behind the old modification time
		if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
}

// damage alters d's stored bytes behind the store's back: on the local
// file (keepTimes puts the old modification time back) with the
// filesystem driver, else by rewriting the object through the driver, as
// another program with access to the bucket would.
func damage(t *testing.T, s *Store, d digest.Digest, truncate, keepTimes bool) {
	t.Helper()
	if s.localRoot != "" {
		if truncate {
			fi, err := os.Stat(blobFile(s, d))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(blobFile(s, d), fi.Size()/2); err != nil {
				t.Fatal(err)
			}
			return
		}
		fi, err := os.Stat(blobFile(s, d))
		if err != nil {
			t.Fatal(err)
		}
		flipByte(t, blobFile(s, d), fi.Size()/3, keepTimes)
		return
	}
	ctx := context.Background()
	body, err := s.driver.GetContent(ctx, dataPath(d))
	if err != nil {
		t.Fatal(err)
	}
	if truncate {
		body = body[:len(body)/2]
	} else {
		body[len(body)/3] ^= 0xff
	}
	if err := s.driver.PutContent(ctx, dataPath(d), body); err != nil {
		t.Fatal(err)
	}
}

func TestDamagedStoredBlobIsNeverServed(t *testing.T) {
	tests := []struct {
		name      string
		restart   bool // a new process: nothing verified yet
		keepTimes bool // filesystem only: the modification time put back
		ranged    bool
		truncate  bool
	}{
		{name: "whole read after restart", restart: true},
		{name: "range after restart", restart: true, ranged: true},
		{name: "whole read, edited while running", restart: false},
		{name: "range, edited while running", restart: false, ranged: true},
		{name: "edited with the old mtime put back", restart: false, keepTimes: true},
		{name: "truncated", restart: true, truncate: true},
		{name: "truncated while running", restart: false, truncate: true},
	}
	forEachDriver(t, func(t *testing.T, drv testDriver, cfg Config) {
		for _, tc := range tests {
			if (tc.restart && !drv.persistent) || (tc.keepTimes && drv.name != "filesystem") {
				continue // the case does not exist for this driver
			}
			t.Run(tc.name, func(t *testing.T) {
				cfg := drv.config(t, t.TempDir())
				cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
				s := openStore(t, cfg, 0)
				body := randomBytes(600<<10, 30)
				d := putBlob(t, s, body)
				damage(t, s, d, tc.truncate, tc.keepTimes)
				if tc.restart {
					s = openStore(t, cfg, 0)
				}
				b, err := s.Open(context.Background(), d)
				if err != nil {
					t.Fatal(err)
				}
				var got []byte
				var rc io.ReadCloser
				if tc.ranged {
					rc, err = b.RangeReader(context.Background(), 10)
				} else {
					rc, err = b.Reader(context.Background())
				}
				if err == nil {
					got, err = io.ReadAll(rc)
					rc.Close()
				}
				b.Close()
				if !errors.Is(err, ErrDigestMismatch) {
					t.Fatalf("read of a damaged blob: %d bytes, %v; want ErrDigestMismatch", len(got), err)
				}
				if len(got) >= len(body)-1 || (tc.ranged && len(got) > 0) {
					t.Fatalf("reader received %d bytes of a damaged %d-byte blob", len(got), len(body))
				}
				if stored(t, s, d) {
					t.Fatal("damaged blob still stored")
				}
				if _, err := s.Open(context.Background(), d); !errors.Is(err, ErrNotFound) {
					t.Fatalf("damaged blob still indexed: %v", err)
				}
			})
		}
	})
}

func TestVerifiedBlobServesRangesAndFile(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, fsConfig(dir), 0)
	body := randomBytes(300<<10, 31)
	d := putBlob(t, s, body)
	// A file verified within a tick of its last change is hashed again
	// (racyWindow); this test is about files past that.
	time.Sleep(racyWindow)
	for _, restart := range []bool{false, true} {
		if restart {
			s = openStore(t, fsConfig(dir), 0)
		}
		for _, off := range []int64{0, 1, 1000, int64(len(body)) - 1} {
			b, err := s.Open(context.Background(), d)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := b.RangeReader(context.Background(), off)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			b.Close()
			if err != nil || !bytes.Equal(got, body[off:]) {
				t.Fatalf("restart %v, range from %d: %d bytes, %v", restart, off, len(got), err)
			}
		}
		// Once verified, a whole read is the file itself (sendfile).
		b, err := s.Open(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := b.Reader(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := rc.(*os.File); !ok {
			t.Errorf("restart %v: verified blob read through %T, want the *os.File", restart, rc)
		}
		rc.Close()
		b.Close()
	}
}

func TestRangeOfInFlightDownloadOnlyOnceVerified(t *testing.T) {
	forEachDriver(t, func(t *testing.T, drv testDriver, cfg Config) {
		for _, corrupt := range []bool{false, true} {
			s := openStore(t, drv.config(t, t.TempDir()), 0) // fresh: nothing cached yet
			f := NewFetcher(s, time.Minute, 10*time.Second, s.log)
			body := randomBytes(1<<20, 32)
			d := digest.FromBytes(body)
			sent := body
			if corrupt {
				sent = bytes.Clone(body)
				sent[len(sent)/2] ^= 0xff
			}
			var calls atomic.Int64
			h, err := f.Open(context.Background(), d, -1, slowSource(sent, &calls))
			if err != nil {
				t.Fatal(err)
			}
			if rc, err := h.RangeReader(context.Background(), 10); !errors.Is(err, ErrUnverified) {
				if rc != nil {
					rc.Close()
				}
				t.Fatalf("corrupt %v: range of a download in flight: %v, want ErrUnverified", corrupt, err)
			}
			got, err := readAll(t, h)
			if corrupt {
				if err == nil || len(got) >= len(body) {
					t.Fatalf("corrupt download read whole: %d bytes, %v", len(got), err)
				}
				if _, err := h.RangeReader(context.Background(), 10); err == nil {
					t.Fatal("range of a failed download answered")
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				rc, err := h.RangeReader(context.Background(), 10)
				if err != nil {
					t.Fatalf("range of a verified download: %v", err)
				}
				part, err := io.ReadAll(rc)
				if err != nil || !bytes.Equal(part, body[10:]) {
					t.Fatalf("range of a verified download: %d bytes, %v", len(part), err)
				}
			}
			h.Close()
		}
	})
}

func TestDamagedStoredManifestIsRefetched(t *testing.T) {
	forEachDriver(t, func(t *testing.T, drv testDriver, cfg Config) {
		if !drv.persistent {
			return // nothing outlives the store to be damaged
		}
		s := openStore(t, cfg, 0)
		ctx := context.Background()
		body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`)
		d := digest.FromBytes(body)
		if err := s.PutManifest(ctx, d, "application/vnd.oci.image.manifest.v1+json", body); err != nil {
			t.Fatal(err)
		}
		damage(t, s, d, false, false)
		s = openStore(t, cfg, 0) // nothing in memory
		if got, _, err := s.Manifest(ctx, d); !errors.Is(err, ErrNotFound) {
			t.Fatalf("damaged manifest: %q, %v; want ErrNotFound", got, err)
		}
		if stored(t, s, d) {
			t.Fatal("damaged manifest still stored")
		}
	})
}

func TestScrubDeletesWhatDoesNotMatch(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, fsConfig(dir), 0)
	ctx := context.Background()
	good := putBlob(t, s, randomBytes(200<<10, 40))
	flipped := putBlob(t, s, randomBytes(200<<10, 41))
	truncated := putBlob(t, s, randomBytes(200<<10, 42))
	manifest := []byte(`{"schemaVersion":2}`)
	md := digest.FromBytes(manifest)
	if err := s.PutManifest(ctx, md, "application/vnd.oci.image.manifest.v1+json", manifest); err != nil {
		t.Fatal(err)
	}
	badManifest := []byte(`{"schemaVersion":2,"x":1}`)
	bmd := digest.FromBytes(badManifest)
	if err := s.PutManifest(ctx, bmd, "application/vnd.oci.image.manifest.v1+json", badManifest); err != nil {
		t.Fatal(err)
	}
	flipByte(t, blobFile(s, flipped), 100<<10, true)
	flipByte(t, blobFile(s, bmd), 3, false)
	if err := os.Truncate(blobFile(s, truncated), 1000); err != nil {
		t.Fatal(err)
	}
	// Not ours: ignored, never deleted.
	stray := filepath.Join(dir, "cache", "blobs", "sha256", "zz", "notahash", "data")
	os.MkdirAll(filepath.Dir(stray), 0o755)
	os.WriteFile(stray, []byte("x"), 0o600)

	cfg := Config{Parameters: map[string]any{"rootdirectory": filepath.Join(dir, "cache")}, Logger: s.log}
	var reported []digest.Digest
	rep, err := Scrub(ctx, cfg, func(d digest.Digest, _ int64, ok bool) {
		if !ok {
			reported = append(reported, d)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Checked != 5 || rep.Bad != 3 || len(reported) != 3 || len(rep.BadDigests) != 3 {
		t.Fatalf("report %+v, reported %v; want 5 checked, 3 bad", rep, reported)
	}
	for d, want := range map[digest.Digest]bool{good: true, md: true, flipped: false, truncated: false, bmd: false} {
		if got := stored(t, s, d); got != want {
			t.Errorf("%s stored = %v after scrub, want %v", d, got, want)
		}
	}
	if _, err := os.Stat(stray); err != nil {
		t.Errorf("stray file touched: %v", err)
	}
	rep, err = Scrub(ctx, cfg, nil)
	if err != nil || rep.Checked != 2 || rep.Bad != 0 {
		t.Fatalf("second scrub: %+v %v", rep, err)
	}
}
