package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

// RunScans: scan records by digest, with compare-and-swap on Revision.
func RunScans(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
	t.Run("scan records", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Scan(ctx, "sha256:none"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing scan: %v", err)
		}
		at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
		for i, state := range []string{store.ScanPending, store.ScanDone, store.ScanFailed} {
			r := store.ScanRecord{
				Digest: fmt.Sprintf("sha256:%064x", i), State: state, Upstream: "ghcr.io", Repository: "org/app",
				QueuedAt: at, UpdatedAt: at.Add(time.Minute),
			}
			if state == store.ScanDone {
				r.Inventory = &scanner.Inventory{ImageDigest: r.Digest, Packages: []scanner.Package{{Name: "zlib", Version: "1.3", Ecosystem: "Debian:12", Layer: "sha256:aa"}}}
				r.Findings = []vulndb.Finding{{ID: "CVE-2026-1", Ecosystem: "Debian:12", Package: "zlib", InstalledVersion: "1.3", Severity: "HIGH"}}
			}
			if state == store.ScanFailed {
				r.Error = "boom"
			}
			if err := s.PutScan(ctx, &r); err != nil {
				t.Fatal(err)
			}
			got, err := s.Scan(ctx, r.Digest)
			if err != nil || got.State != state || got.Error != r.Error || !reflect.DeepEqual(got.Inventory, r.Inventory) || !reflect.DeepEqual(got.Findings, r.Findings) || !got.UpdatedAt.Equal(r.UpdatedAt) || got.Revision != 1 || r.Revision != 1 {
				t.Fatalf("round trip: %+v, %v", got, err)
			}
		}
		for i := range 3 {
			sameWithoutInventory(t, s, fmt.Sprintf("sha256:%064x", i))
		}
		if _, err := store.ScanWithoutInventory(ctx, s, "sha256:none"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing scan without inventory: %v", err)
		}
		var seen []string
		if err := s.Scans(ctx, func(r store.ScanRecord) bool { seen = append(seen, r.State); return true }); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 3 || seen[0] != store.ScanPending {
			t.Fatalf("Scans visited %v", seen)
		}
		n := 0
		s.Scans(ctx, func(store.ScanRecord) bool { n++; return false })
		if n != 1 {
			t.Fatalf("Scans did not stop when told: %d", n)
		}
		var parts []store.ScanFindings
		if err := s.ScanFindings(ctx, func(f store.ScanFindings) bool { parts = append(parts, f); return true }); err != nil {
			t.Fatal(err)
		}
		if len(parts) != 3 || parts[1].State != store.ScanDone || parts[1].Digest != fmt.Sprintf("sha256:%064x", 1) ||
			len(parts[1].Findings) != 1 || parts[1].Findings[0].ID != "CVE-2026-1" || parts[0].Findings != nil {
			t.Fatalf("ScanFindings visited %+v", parts)
		}
		n = 0
		s.ScanFindings(ctx, func(store.ScanFindings) bool { n++; return false })
		if n != 1 {
			t.Fatalf("ScanFindings did not stop when told: %d", n)
		}
	})
	t.Run("scan record revisions", func(t *testing.T) {
		s := newStore(t)
		d := fmt.Sprintf("sha256:%064x", 42)
		first := store.ScanRecord{Digest: d, State: store.ScanPending}
		if err := s.PutScan(ctx, &first); err != nil || first.Revision != 1 {
			t.Fatalf("create: revision %d, %v", first.Revision, err)
		}
		// Creating it again from nothing is a conflict: it exists now.
		if err := s.PutScan(ctx, &store.ScanRecord{Digest: d, State: store.ScanDone}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second create: %v", err)
		}
		// Two writers read revision 1; the first write wins, the second
		// is told to read again, and nothing of the first is lost.
		a, _ := s.Scan(ctx, d)
		b, _ := s.Scan(ctx, d)
		a.State, b.State = store.ScanDone, store.ScanFailed
		if err := s.PutScan(ctx, &a); err != nil || a.Revision != 2 {
			t.Fatalf("first writer: revision %d, %v", a.Revision, err)
		}
		if err := s.PutScan(ctx, &b); !errors.Is(err, store.ErrConflict) || b.Revision != 1 {
			t.Fatalf("second writer: revision %d, %v", b.Revision, err)
		}
		if got, _ := s.Scan(ctx, d); got.State != store.ScanDone || got.Revision != 2 {
			t.Fatalf("stored: %+v", got)
		}
		// A writer that keeps its record writes again without reading.
		a.Error = "again"
		if err := s.PutScan(ctx, &a); err != nil || a.Revision != 3 {
			t.Fatalf("rewrite: revision %d, %v", a.Revision, err)
		}
		// Concurrent writers from the same revision: exactly one wins.
		base, _ := s.Scan(ctx, d)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				r := base
				r.Error = fmt.Sprint(i)
				switch err := s.PutScan(ctx, &r); {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, store.ErrConflict):
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d concurrent writers from one revision succeeded", wins.Load())
		}
	})
	t.Run("many scan records in digest order", func(t *testing.T) {
		s := newStore(t)
		const records = 250 // more than one batch of any implementation that reads in batches
		for i := range records {
			// Written out of order; read back in digest order.
			r := store.ScanRecord{Digest: digestN((i * 97) % records), State: store.ScanDone}
			if err := s.PutScan(ctx, &r); err != nil {
				t.Fatal(err)
			}
		}
		var seen []string
		if err := s.Scans(ctx, func(r store.ScanRecord) bool { seen = append(seen, r.Digest); return true }); err != nil {
			t.Fatal(err)
		}
		if len(seen) != records || !slices.IsSorted(seen) || len(slices.Compact(slices.Clone(seen))) != records {
			t.Fatalf("Scans visited %d records (sorted: %v), want %d distinct in digest order", len(seen), slices.IsSorted(seen), records)
		}
		n := 0
		if err := s.Scans(ctx, func(store.ScanRecord) bool { n++; return n < 150 }); err != nil || n != 150 {
			t.Fatalf("Scans did not stop when told: %d calls, %v", n, err)
		}
	})
}

// sameWithoutInventory checks that the store reads d without its
// inventory cheaply (store.InventorySkipper) and as Scan reads it, match
// marks included, but for the inventory.
func sameWithoutInventory(t *testing.T, s store.Store, d string) {
	t.Helper()
	ctx := context.Background()
	sk, ok := s.(store.InventorySkipper)
	if !ok {
		t.Fatalf("%T cannot read a record without its inventory", s)
	}
	whole, err := s.Scan(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	light, err := sk.ScanWithoutInventory(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if light.Inventory != nil {
		t.Fatalf("ScanWithoutInventory(%s) read an inventory", d)
	}
	whole.Inventory = nil
	if !reflect.DeepEqual(light, whole) {
		t.Fatalf("ScanWithoutInventory and Scan disagree:\n%+v\n%+v", light, whole)
	}
	found := false
	err = sk.ScansWithoutInventory(ctx, func(r store.ScanRecord) bool {
		if r.Digest != d {
			return true
		}
		found = true
		if !reflect.DeepEqual(r, whole) {
			t.Errorf("ScansWithoutInventory and Scan disagree:\n%+v\n%+v", r, whole)
		}
		return false
	})
	if err != nil || !found {
		t.Fatalf("ScansWithoutInventory: found %s %v, %v", d, found, err)
	}
}
