package storetest

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

// RunMatchMarks: a re-match that found the same findings marks the record
// matched against the new database instead of rewriting it; reads show the
// mark while the record stays at the marked revision, and any write ends it.
func RunMatchMarks(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
	const v1, v2, v3 = "sha256:aa@2026-11-01T00:00:00Z", "sha256:bb@2026-11-02T00:00:00Z", "sha256:cc@2026-11-03T00:00:00Z"
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	done := func(n int) store.ScanRecord {
		d := digestN(n)
		return store.ScanRecord{Digest: d, State: store.ScanDone, DBVersion: v1, QueuedAt: at, UpdatedAt: at,
			Inventory: &scanner.Inventory{ImageDigest: d, Packages: []scanner.Package{{Name: "zlib", Version: "1.3", Ecosystem: "Debian:12"}}},
			Findings:  []vulndb.Finding{{ID: "CVE-2026-1", Ecosystem: "Debian:12", Package: "zlib", InstalledVersion: "1.3", Severity: "HIGH"}}}
	}
	marker := func(t *testing.T, s store.Store) store.MatchMarker {
		m, ok := s.(store.MatchMarker)
		if !ok {
			t.Fatalf("%T keeps no match marks", s)
		}
		return m
	}
	read := func(t *testing.T, s store.Store, d string) (one, listed store.ScanRecord) {
		t.Helper()
		one, err := s.Scan(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Scans(ctx, func(r store.ScanRecord) bool {
			if r.Digest == d {
				listed = r
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(one, listed) {
			t.Fatalf("Scan and Scans disagree:\n%+v\n%+v", one, listed)
		}
		sameWithoutInventory(t, s, d)
		return one, listed
	}

	t.Run("a mark reads as the new version until the record is written", func(t *testing.T) {
		s := newStore(t)
		r := done(1)
		if err := s.PutScan(ctx, &r); err != nil {
			t.Fatal(err)
		}
		if dropped, err := marker(t, s).MarkMatched(ctx, []store.MatchMark{{Digest: r.Digest, Revision: r.Revision, DBVersion: v2}}); err != nil || len(dropped) != 0 {
			t.Fatalf("dropped %v, %v", dropped, err)
		}
		got, _ := read(t, s, r.Digest)
		if got.DBVersion != v2 || got.FindingsDBVersion != v1 || got.Revision != r.Revision ||
			!reflect.DeepEqual(got.Findings, r.Findings) || !reflect.DeepEqual(got.Inventory, r.Inventory) || !got.UpdatedAt.Equal(at) {
			t.Fatalf("marked record reads %+v", got)
		}
		// A newer mark replaces it.
		if _, err := marker(t, s).MarkMatched(ctx, []store.MatchMark{{Digest: r.Digest, Revision: r.Revision, DBVersion: v3}}); err != nil {
			t.Fatal(err)
		}
		if got, _ := read(t, s, r.Digest); got.DBVersion != v3 || got.FindingsDBVersion != v1 {
			t.Fatalf("marked again: db %q, findings from %q", got.DBVersion, got.FindingsDBVersion)
		}
		// A write (here: new findings from v1 again) ends the mark.
		if _, err := store.UpdateScan(ctx, s, r.Digest, func(rec *store.ScanRecord, _ bool) (bool, error) {
			rec.DBVersion, rec.Findings = v1, []vulndb.Finding{}
			return true, nil
		}); err != nil {
			t.Fatal(err)
		}
		if got, _ := read(t, s, r.Digest); got.DBVersion != v1 || got.FindingsDBVersion != "" || len(got.Findings) != 0 || got.Revision != r.Revision+1 {
			t.Fatalf("after a write: %+v", got)
		}
	})
	t.Run("a new result reads in place of the stored findings", func(t *testing.T) {
		s := newStore(t)
		r := done(6)
		if err := s.PutScan(ctx, &r); err != nil {
			t.Fatal(err)
		}
		m := marker(t, s)
		// Same findings under v2, then new ones under v3: the result ends
		// the same-findings mark.
		if _, err := m.MarkMatched(ctx, []store.MatchMark{{Digest: r.Digest, Revision: r.Revision, DBVersion: v2}}); err != nil {
			t.Fatal(err)
		}
		later := at.Add(time.Hour)
		result := &store.MatchResult{Findings: []vulndb.Finding{{ID: "CVE-2026-2", Ecosystem: "Debian:12", Package: "zlib", InstalledVersion: "1.3", Severity: "LOW"}},
			DBWarning: "vulnerability database stale", UpdatedAt: later}
		if dropped, err := m.MarkMatched(ctx, []store.MatchMark{{Digest: r.Digest, Revision: r.Revision, DBVersion: v3, Result: result}}); err != nil || len(dropped) != 0 {
			t.Fatalf("dropped %v, %v", dropped, err)
		}
		got, _ := read(t, s, r.Digest)
		if got.DBVersion != v3 || got.FindingsDBVersion != "" || !reflect.DeepEqual(got.Findings, result.Findings) || got.DBWarning != result.DBWarning ||
			!got.UpdatedAt.Equal(later) || got.Revision != r.Revision || !reflect.DeepEqual(got.Inventory, r.Inventory) {
			t.Fatalf("record with a new result reads %+v", got)
		}
		var parts []store.ScanFindings
		if err := s.ScanFindings(ctx, func(f store.ScanFindings) bool { parts = append(parts, f); return true }); err != nil {
			t.Fatal(err)
		}
		if len(parts) != 1 || !reflect.DeepEqual(parts[0].Findings, result.Findings) {
			t.Fatalf("ScanFindings reads %+v", parts)
		}
		// Then the same findings under a later version: on top of the result.
		const v4 = "sha256:dd@2026-11-04T00:00:00Z"
		if _, err := m.MarkMatched(ctx, []store.MatchMark{{Digest: r.Digest, Revision: r.Revision, DBVersion: v4}}); err != nil {
			t.Fatal(err)
		}
		if got, _ := read(t, s, r.Digest); got.DBVersion != v4 || got.FindingsDBVersion != v3 || !reflect.DeepEqual(got.Findings, result.Findings) {
			t.Fatalf("same findings after a result: %+v", got)
		}
		// A writer reads the marks applied and writes them into the record.
		written, err := store.UpdateScan(ctx, s, r.Digest, func(rec *store.ScanRecord, _ bool) (bool, error) {
			rec.Error = "written"
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := read(t, s, r.Digest); got.DBVersion != v4 || got.FindingsDBVersion != "" || !reflect.DeepEqual(got.Findings, result.Findings) ||
			got.Error != "written" || got.Revision != written.Revision {
			t.Fatalf("after a write: %+v", got)
		}
	})
	t.Run("marks that no longer stand are not applied", func(t *testing.T) {
		s := newStore(t)
		r, pending := done(2), store.ScanRecord{Digest: digestN(3), State: store.ScanPending}
		for _, rec := range []*store.ScanRecord{&r, &pending} {
			if err := s.PutScan(ctx, rec); err != nil {
				t.Fatal(err)
			}
		}
		marks := []store.MatchMark{
			{Digest: r.Digest, Revision: r.Revision + 1, DBVersion: v2},         // written meanwhile
			{Digest: pending.Digest, Revision: pending.Revision, DBVersion: v2}, // not a result
			{Digest: digestN(4), Revision: 1, DBVersion: v2},                    // not stored
		}
		dropped, err := marker(t, s).MarkMatched(ctx, marks)
		// The pending record is at the marked revision: its mark is kept
		// but never applied (only results are marked by a re-match).
		if want := []store.MatchMark{marks[0], marks[2]}; err != nil || !reflect.DeepEqual(dropped, want) {
			t.Fatalf("dropped %+v, want %+v; %v", dropped, want, err)
		}
		if got, _ := read(t, s, r.Digest); got.DBVersion != v1 || got.FindingsDBVersion != "" {
			t.Fatalf("mark of another revision applied: %+v", got)
		}
		if got, _ := read(t, s, pending.Digest); got.DBVersion != "" || got.FindingsDBVersion != "" {
			t.Fatalf("mark on a pending record applied: %+v", got)
		}
		if _, err := s.Scan(ctx, digestN(4)); err == nil {
			t.Fatal("a mark made a record of a digest never stored")
		}
		n := 0
		if err := s.Scans(ctx, func(store.ScanRecord) bool { n++; return true }); err != nil || n != 2 {
			t.Fatalf("Scans: %d records, %v", n, err)
		}
	})
	t.Run("bad batches are refused whole", func(t *testing.T) {
		s := newStore(t)
		r := done(5)
		if err := s.PutScan(ctx, &r); err != nil {
			t.Fatal(err)
		}
		good := store.MatchMark{Digest: r.Digest, Revision: r.Revision, DBVersion: v2}
		tooMany := make([]store.MatchMark, store.MaxMatchMarks+1)
		for i := range tooMany {
			tooMany[i] = good
		}
		for name, marks := range map[string][]store.MatchMark{
			"too many":    tooMany,
			"no version":  {good, {Digest: r.Digest, Revision: r.Revision}},
			"no revision": {good, {Digest: r.Digest, DBVersion: v2}},
			"no digest":   {good, {Revision: 1, DBVersion: v2}},
		} {
			if _, err := marker(t, s).MarkMatched(ctx, marks); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
		if got, _ := read(t, s, r.Digest); got.DBVersion != v1 {
			t.Fatalf("a refused batch was written in part: %+v", got)
		}
		if _, err := marker(t, s).MarkMatched(ctx, nil); err != nil {
			t.Fatalf("no marks: %v", err)
		}
	})
	t.Run(fmt.Sprintf("a batch of %d marks", store.MaxMatchMarks), func(t *testing.T) {
		s := newStore(t)
		marks := make([]store.MatchMark, 0, store.MaxMatchMarks)
		for i := range store.MaxMatchMarks {
			r := done(100 + i)
			if err := s.PutScan(ctx, &r); err != nil {
				t.Fatal(err)
			}
			marks = append(marks, store.MatchMark{Digest: r.Digest, Revision: r.Revision, DBVersion: v2})
		}
		if dropped, err := marker(t, s).MarkMatched(ctx, marks); err != nil || len(dropped) != 0 {
			t.Fatalf("dropped %d, %v", len(dropped), err)
		}
		n := 0
		err := s.Scans(ctx, func(r store.ScanRecord) bool {
			if r.DBVersion == v2 && r.FindingsDBVersion == v1 {
				n++
			}
			return true
		})
		if err != nil || n != store.MaxMatchMarks {
			t.Fatalf("%d of %d records marked, %v", n, store.MaxMatchMarks, err)
		}
	})
}
