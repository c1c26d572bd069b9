package cache

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/store"
)

// replicas opens n stores on one shared filesystem root, each with its own
// spool, and a fetcher for each sharing leases.
func replicas(t *testing.T, n int, leases Leases) []*Fetcher {
	t.Helper()
	root := filepath.Join(t.TempDir(), "shared")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var out []*Fetcher
	for i := range n {
		s, err := Open(context.Background(), Config{Parameters: map[string]any{"rootdirectory": root},
			SpoolDir: filepath.Join(t.TempDir(), "spool"), Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, NewFetcher(s, time.Minute, 10*time.Second, quiet, WithLeases(leases, string(rune('a'+i)))))
	}
	return out
}

// Replicas sharing a storage fetch a blob from its upstream once however
// many clients ask each of them at once: one downloads under the lease,
// the others serve it from the shared storage once it is there.
func TestDownloadsAreSingleFlightAcrossReplicas(t *testing.T) {
	fs := replicas(t, 3, store.NewLocalLeases(0))
	body := randomBytes(2<<20, 7)
	d := digest.FromBytes(body)
	var calls atomic.Int64
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			h, err := fs[i%len(fs)].Open(context.Background(), d, int64(len(body)), slowSource(body, &calls))
			if err != nil {
				t.Error(err)
				return
			}
			defer h.Close()
			got, err := readAll(t, h)
			if err != nil || !bytes.Equal(got, body) {
				t.Errorf("client %d: %d bytes, %v", i, len(got), err)
			}
		})
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d upstream fetches across 3 replicas, want 1", n)
	}
}

// A replica that took a download's lease and died (stops renewing) holds
// the others up only until the lease runs out; then one of them downloads.
func TestDeadReplicasLeaseRunsOut(t *testing.T) {
	leases := store.NewLocalLeases(0)
	fs := replicas(t, 1, leases)
	body := randomBytes(64<<10, 9)
	d := digest.FromBytes(body)
	if ok, _ := leases.Acquire(context.Background(), leaseKey(d), "dead", 300*time.Millisecond); !ok {
		t.Fatal("could not take the lease for the dead replica")
	}
	var calls atomic.Int64
	h, err := fs[0].Open(context.Background(), d, int64(len(body)), slowSource(body, &calls))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if got, err := readAll(t, h); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
	if calls.Load() != 1 {
		t.Fatalf("%d upstream fetches, want 1", calls.Load())
	}
	// The lease is released once the download is stored.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ok, _ := leases.Acquire(context.Background(), leaseKey(d), "next", time.Second); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lease was not released")
		}
	}
}
