// Package storetest is the conformance suite every store.Store passes.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/store"
)

// Run exercises a Store made fresh by newStore for each subtest.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
	t.Run("missing tag", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Tag(ctx, "docker.io/library/alpine:nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Tag of a missing key: got %v, want ErrNotFound", err)
		}
	})
	t.Run("round trip and overwrite", func(t *testing.T) {
		s := newStore(t)
		at := time.Date(2026, 11, 27, 8, 0, 0, 123, time.UTC)
		tests := []store.TagEntry{
			{Digest: "sha256:" + fmt.Sprintf("%064x", 1), MediaType: "application/vnd.oci.image.index.v1+json", Size: 10, CheckedAt: at},
			{Digest: "sha256:" + fmt.Sprintf("%064x", 2), MediaType: "application/vnd.docker.distribution.manifest.v2+json", Size: 20, CheckedAt: at.Add(time.Hour)},
		}
		for _, want := range tests {
			if err := s.PutTag(ctx, "k", want); err != nil {
				t.Fatal(err)
			}
			got, err := s.Tag(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			if got.Digest != want.Digest || got.MediaType != want.MediaType || got.Size != want.Size || !got.CheckedAt.Equal(want.CheckedAt) {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		}
	})
	t.Run("keys are independent", func(t *testing.T) {
		s := newStore(t)
		for i := range 50 {
			if err := s.PutTag(ctx, fmt.Sprintf("r/%d", i), store.TagEntry{Size: int64(i)}); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 50 {
			e, err := s.Tag(ctx, fmt.Sprintf("r/%d", i))
			if err != nil || e.Size != int64(i) {
				t.Fatalf("key %d: %+v, %v", i, e, err)
			}
		}
	})
	t.Run("scan records", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.Scan(ctx, "sha256:none"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing scan: %v", err)
		}
		at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
		for i, state := range []string{store.ScanPending, store.ScanDone, store.ScanFailed} {
			r := store.ScanRecord{
				Digest: fmt.Sprintf("sha256:%064x", i), State: state, Upstream: "ghcr.io", Repository: "org/app",
				QueuedAt: at, UpdatedAt: at.Add(time.Minute), Inventory: []byte(`{"packages":[]}`), Findings: []byte(`[]`),
			}
			if state == store.ScanFailed {
				r.Error = "boom"
			}
			if err := s.PutScan(ctx, &r); err != nil {
				t.Fatal(err)
			}
			got, err := s.Scan(ctx, r.Digest)
			if err != nil || got.State != state || got.Error != r.Error || string(got.Inventory) != string(r.Inventory) || !got.UpdatedAt.Equal(r.UpdatedAt) || got.Revision != 1 || r.Revision != 1 {
				t.Fatalf("round trip: %+v, %v", got, err)
			}
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
	t.Run("published referrers", func(t *testing.T) {
		s := newStore(t)
		subject := fmt.Sprintf("sha256:%064x", 7)
		if refs, err := s.Referrers(ctx, subject); err != nil || len(refs) != 0 {
			t.Fatalf("no referrers yet: %v %v", refs, err)
		}
		empty := store.Content{MediaType: "application/vnd.oci.empty.v1+json", Body: []byte("{}")}
		first := map[string]store.Content{"sha256:m1": {MediaType: "m", Body: []byte("1")}, "sha256:b1": {MediaType: "b", Body: []byte("x")}, "sha256:e": empty}
		if err := s.PutReferrers(ctx, subject, []json.RawMessage{[]byte(`{"digest":"sha256:m1"}`)}, first); err != nil {
			t.Fatal(err)
		}
		other := fmt.Sprintf("sha256:%064x", 8)
		if err := s.PutReferrers(ctx, other, []json.RawMessage{[]byte(`{"digest":"sha256:m9"}`)}, map[string]store.Content{"sha256:e": empty}); err != nil {
			t.Fatal(err)
		}
		if c, err := s.Content(ctx, "sha256:b1"); err != nil || string(c.Body) != "x" || c.MediaType != "b" {
			t.Fatalf("content: %+v %v", c, err)
		}
		// Replacing drops the old contents, but not what another subject uses.
		second := map[string]store.Content{"sha256:m2": {MediaType: "m", Body: []byte("2")}}
		if err := s.PutReferrers(ctx, subject, []json.RawMessage{[]byte(`{"digest":"sha256:m2"}`)}, second); err != nil {
			t.Fatal(err)
		}
		refs, err := s.Referrers(ctx, subject)
		if err != nil || len(refs) != 1 || string(refs[0]) != `{"digest":"sha256:m2"}` {
			t.Fatalf("referrers after replace: %s %v", refs, err)
		}
		for d, want := range map[string]error{"sha256:m1": store.ErrNotFound, "sha256:b1": store.ErrNotFound, "sha256:e": nil, "sha256:m2": nil} {
			if _, err := s.Content(ctx, d); !errors.Is(err, want) && err != want {
				t.Errorf("content %s after replace: %v, want %v", d, err, want)
			}
		}
	})
	t.Run("added contents", func(t *testing.T) {
		s := newStore(t)
		subject := fmt.Sprintf("sha256:%064x", 9)
		shared := store.Content{MediaType: "b", Body: []byte("shared")}
		if err := s.PutReferrers(ctx, subject, []json.RawMessage{[]byte(`{"digest":"sha256:r1"}`)},
			map[string]store.Content{"sha256:r1": {MediaType: "m", Body: []byte("r")}, "sha256:s": shared}); err != nil {
			t.Fatal(err)
		}
		// Added before any referrers were published, too.
		lone := fmt.Sprintf("sha256:%064x", 10)
		if err := s.AddContents(ctx, lone, map[string]store.Content{"sha256:lone": {MediaType: "m", Body: []byte("l")}}); err != nil {
			t.Fatal(err)
		}
		if c, err := s.Content(ctx, "sha256:lone"); err != nil || string(c.Body) != "l" {
			t.Fatalf("content added without referrers: %+v %v", c, err)
		}
		// Groups beyond the most recent eight are dropped, except what the
		// referrers themselves still use; adding a group again keeps it fresh.
		const groups = 12
		for i := range groups {
			add := map[string]store.Content{fmt.Sprintf("sha256:a%d", i): {MediaType: "m", Body: []byte{byte(i)}}, "sha256:s": shared}
			if err := s.AddContents(ctx, subject, add); err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				continue
			}
			if err := s.AddContents(ctx, subject, map[string]store.Content{"sha256:a0": {MediaType: "m", Body: []byte{0}}, "sha256:s": shared}); err != nil {
				t.Fatal(err)
			}
		}
		for i := range groups {
			_, err := s.Content(ctx, fmt.Sprintf("sha256:a%d", i))
			if kept := i == 0 || i >= groups-7; kept != (err == nil) {
				t.Errorf("added group %d: kept=%v, err=%v", i, kept, err)
			}
		}
		if refs, err := s.Referrers(ctx, subject); err != nil || len(refs) != 1 {
			t.Fatalf("referrers changed by AddContents: %s %v", refs, err)
		}
		// Replacing the referrers drops every added group.
		if err := s.PutReferrers(ctx, subject, nil, map[string]store.Content{"sha256:s": shared}); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"sha256:a0", "sha256:a11", "sha256:r1"} {
			if _, err := s.Content(ctx, d); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("content %s after replace: %v", d, err)
			}
		}
		if _, err := s.Content(ctx, "sha256:s"); err != nil {
			t.Errorf("shared content after replace: %v", err)
		}
	})
	t.Run("local tags", func(t *testing.T) {
		s := newStore(t)
		if _, err := s.LocalTag(ctx, "sha256-abc.sig"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing local tag: %v", err)
		}
		if err := s.PutLocalTag(ctx, "sha256-abc.sig", "sha256:1"); err != nil {
			t.Fatal(err)
		}
		if d, err := s.LocalTag(ctx, "sha256-abc.sig"); err != nil || d != "sha256:1" {
			t.Fatalf("local tag: %q %v", d, err)
		}
	})
	t.Run("concurrent writers", func(t *testing.T) {
		s := newStore(t)
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				for j := range 10 {
					if err := s.PutTag(ctx, fmt.Sprintf("c/%d", j), store.TagEntry{Size: int64(i)}); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		for j := range 10 {
			if _, err := s.Tag(ctx, fmt.Sprintf("c/%d", j)); err != nil {
				t.Fatal(err)
			}
		}
	})
	runDecisions(t, newStore)
	runRelations(t, newStore)
}
