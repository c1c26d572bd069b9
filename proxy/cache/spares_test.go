package cache

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// A download takes a spare spool file and a new one replaces it once the
// download is done; a spare removed from the spool behind the store's back
// is passed over, not written to and committed from a path that is gone.
func TestSpareSpoolFiles(t *testing.T) {
	tests := []struct {
		name   string
		before func(t *testing.T, s *Store)
	}{
		{"taken and replaced", func(*testing.T, *Store) {}},
		{"removed behind the store's back", func(t *testing.T, s *Store) {
			entries, err := os.ReadDir(s.spoolDir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if err := os.Remove(filepath.Join(s.spoolDir, e.Name())); err != nil {
					t.Fatal(err)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			forEachDriver(t, func(t *testing.T, drv testDriver, cfg Config) {
				s := openStore(t, cfg, 0)
				if n := len(s.spares); n != SpareSpoolFiles {
					t.Fatalf("%d spare spool files after Open, want %d", n, SpareSpoolFiles)
				}
				tc.before(t, s)
				f := NewFetcher(s, time.Minute, 10*time.Second, s.log)
				body := randomBytes(300<<10, 9)
				d := digest.FromBytes(body)
				var calls atomic.Int64
				h, err := f.Open(context.Background(), d, -1, slowSource(body, &calls))
				if err != nil {
					t.Fatal(err)
				}
				got, err := readAll(t, h)
				h.Close()
				if err != nil || !bytes.Equal(got, body) {
					t.Fatalf("read %d bytes, %v", len(got), err)
				}
				waitDownloadEnded(t, f, d)
				if !stored(t, s, d) {
					t.Fatal("the download was not committed")
				}
				if n := len(s.spares); n != SpareSpoolFiles {
					t.Fatalf("%d spare spool files after a download, want %d", n, SpareSpoolFiles)
				}
				if n := spoolEntries(t, s); n != 0 {
					t.Fatalf("%d spool files besides the spares", n)
				}
			})
		})
	}
}

// Storing a manifest takes a spare spool file too, and replaces it, so the
// blobs of a cold pull, asked after its manifests, find spares.
func TestPutManifestReplacesItsSpare(t *testing.T) {
	s := openStore(t, fsConfig(t.TempDir()), 0)
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}`)
	if err := s.PutManifest(context.Background(), digest.FromBytes(body), "application/vnd.oci.image.manifest.v1+json", body); err != nil {
		t.Fatal(err)
	}
	if n := len(s.spares); n != SpareSpoolFiles {
		t.Fatalf("%d spare spool files after storing a manifest, want %d", n, SpareSpoolFiles)
	}
	if n := spoolEntries(t, s); n != 0 {
		t.Fatalf("%d spool files besides the spares", n)
	}
}
