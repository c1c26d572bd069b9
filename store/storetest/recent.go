package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/store"
)

// runDecisionsByTime: the newest-first walk of verdicts (part of
// RunDecisions).
func runDecisionsByTime(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
	base := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	name := func(d store.DecisionRecord) string {
		return d.Digest[len(d.Digest)-3:] + " " + d.Upstream + "/" + d.Repository
	}
	walk := func(t *testing.T, s store.Store, after store.TimeCursor, stopAfter int) []string {
		t.Helper()
		var got []string
		err := s.DecisionsByTime(ctx, after, func(d store.DecisionRecord) bool {
			got = append(got, name(d))
			return stopAfter == 0 || len(got) < stopAfter
		})
		if err != nil {
			t.Fatalf("DecisionsByTime(%+v): %v", after, err)
		}
		return got
	}
	put := func(t *testing.T, s store.Store, r *store.DecisionRecord) {
		t.Helper()
		if err := s.PutDecision(ctx, r); err != nil {
			t.Fatalf("put %s: %v", name(*r), err)
		}
	}
	t.Run("decisions by time: order, ties, updates, cursors", func(t *testing.T) {
		s := newStore(t)
		recs := []*store.DecisionRecord{
			{Digest: digestN(5), Upstream: "docker.io", Repository: "a/x", UpdatedAt: base.Add(1 * time.Second)},
			// Three of the same instant: by digest, then upstream/repository.
			{Digest: digestN(9), Upstream: "docker.io", Repository: "a/x", UpdatedAt: base.Add(3 * time.Second)},
			{Digest: digestN(2), Upstream: "ghcr.io", Repository: "a/x", UpdatedAt: base.Add(3 * time.Second)},
			{Digest: digestN(2), Upstream: "docker.io", Repository: "b/y", UpdatedAt: base.Add(3 * time.Second)},
			// A nanosecond apart still orders.
			{Digest: digestN(7), Upstream: "docker.io", Repository: "a/x", UpdatedAt: base.Add(3*time.Second + 1)},
			// No time at all (written by an older version): the oldest.
			{Digest: digestN(1), Upstream: "docker.io", Repository: "a/x"},
			{Digest: digestN(3), Upstream: "docker.io", Repository: "a/x", UpdatedAt: base.Add(2 * time.Second).In(time.FixedZone("X", 3600))},
		}
		for _, r := range recs {
			r.Verdict = "allow"
			put(t, s, r)
		}
		want := []string{"007 docker.io/a/x", "002 docker.io/b/y", "002 ghcr.io/a/x", "009 docker.io/a/x",
			"003 docker.io/a/x", "005 docker.io/a/x", "001 docker.io/a/x"}
		if got := walk(t, s, store.TimeCursor{}, 0); !slices.Equal(got, want) {
			t.Fatalf("newest first:\n got %v\nwant %v", got, want)
		}
		// From each position, the rest; from a position between entries
		// (nothing stored there), what follows it.
		for i := range recs {
			r := *recs[i]
			at := slices.Index(want, name(r))
			if got := walk(t, s, store.CursorOf(r), 0); !slices.Equal(got, want[at+1:]) {
				t.Errorf("after %s: got %v, want %v", name(r), got, want[at+1:])
			}
		}
		between := store.TimeCursor{At: base.Add(3 * time.Second), Digest: digestN(2), Where: "docker.io/z/z"}
		if got := walk(t, s, between, 0); !slices.Equal(got, want[2:]) {
			t.Errorf("after a position between entries: got %v, want %v", got, want[2:])
		}
		if got := walk(t, s, store.TimeCursor{}, 2); !slices.Equal(got, want[:2]) {
			t.Errorf("stopped after 2: got %v", got)
		}
		// A new verdict on the oldest moves it to the front, once; one
		// moved back in time moves back.
		oldest := recs[5]
		oldest.UpdatedAt, oldest.Verdict = base.Add(time.Hour), "block"
		put(t, s, oldest)
		back := recs[4]
		back.UpdatedAt = base
		put(t, s, back)
		want = []string{"001 docker.io/a/x", "002 docker.io/b/y", "002 ghcr.io/a/x", "009 docker.io/a/x",
			"003 docker.io/a/x", "005 docker.io/a/x", "007 docker.io/a/x"}
		if got := walk(t, s, store.TimeCursor{}, 0); !slices.Equal(got, want) {
			t.Fatalf("after updates:\n got %v\nwant %v", got, want)
		}
		var first store.DecisionRecord
		if err := s.DecisionsByTime(ctx, store.TimeCursor{}, func(d store.DecisionRecord) bool { first = d; return false }); err != nil {
			t.Fatal(err)
		}
		if first.Verdict != "block" || first.Revision != 2 {
			t.Fatalf("the walk gave an old version: %+v", first)
		}
		// A write refused as a conflict moves nothing.
		stale := *recs[0]
		stale.Revision, stale.UpdatedAt = 0, base.Add(2*time.Hour)
		if err := s.PutDecision(ctx, &stale); err == nil {
			t.Fatal("a stale write was taken")
		}
		if got := walk(t, s, store.TimeCursor{}, 0); !slices.Equal(got, want) {
			t.Fatalf("after a refused write:\n got %v\nwant %v", got, want)
		}
	})
	t.Run("decisions by time: concurrent writers from one read", func(t *testing.T) {
		s := newStore(t)
		r := store.DecisionRecord{Digest: digestN(1), Upstream: "docker.io", Repository: "a/x", Verdict: "allow", UpdatedAt: base}
		put(t, s, &r)
		other := store.DecisionRecord{Digest: digestN(2), Upstream: "docker.io", Repository: "a/x", Verdict: "allow", UpdatedAt: base.Add(30 * time.Second)}
		put(t, s, &other)
		won := make(chan store.DecisionRecord, 8)
		var wg sync.WaitGroup
		for i := range 8 {
			w := r
			w.Verdict, w.UpdatedAt = fmt.Sprint("v", i), base.Add(time.Duration(i+1)*time.Minute)
			wg.Go(func() {
				if s.PutDecision(ctx, &w) == nil {
					won <- w
				}
			})
		}
		wg.Wait()
		close(won)
		var winners []store.DecisionRecord
		for w := range won {
			winners = append(winners, w)
		}
		if len(winners) != 1 {
			t.Fatalf("%d writers from one read won, want 1", len(winners))
		}
		// Listed once, as the winner wrote it, wherever its time puts it.
		var got []string
		err := s.DecisionsByTime(ctx, store.TimeCursor{}, func(d store.DecisionRecord) bool {
			got = append(got, name(d)+" "+d.Verdict)
			return true
		})
		want := []string{"001 docker.io/a/x " + winners[0].Verdict, "002 docker.io/a/x allow"}
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("after concurrent writes: %v, %v; want %v", got, err, want)
		}
	})
	t.Run("decisions by time: pages visit every verdict once", func(t *testing.T) {
		s := newStore(t)
		// More than a batch of a store's index read; a fifth share an
		// instant with another; a tenth written twice.
		const n = 250
		var want []string
		for i := range n {
			r := store.DecisionRecord{Digest: digestN(i), Upstream: "docker.io", Repository: "a/x", Verdict: "allow",
				UpdatedAt: base.Add(time.Duration(i/5*5+i%2) * time.Millisecond)}
			put(t, s, &r)
			if i%10 == 0 {
				r.UpdatedAt = r.UpdatedAt.Add(time.Minute)
				put(t, s, &r)
			}
			want = append(want, name(r))
		}
		var got []string
		after := store.TimeCursor{}
		var prev time.Time
		for page := 0; page <= n; page++ { // bounded: n pages at most
			var last store.DecisionRecord
			k := 0
			err := s.DecisionsByTime(ctx, after, func(d store.DecisionRecord) bool {
				if !prev.IsZero() && d.UpdatedAt.After(prev) {
					t.Errorf("%s (%v) after a newer one (%v)", name(d), d.UpdatedAt, prev)
				}
				prev = d.UpdatedAt
				got = append(got, name(d))
				last = d
				k++
				return k < 7
			})
			if err != nil {
				t.Fatal(err)
			}
			if k == 0 {
				break
			}
			after = store.CursorOf(last)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("pages of 7 listed %d verdicts (%d distinct), want each of %d once: %s",
				len(got), len(slices.Compact(slices.Clone(got))), len(want), strings.Join(got[:min(len(got), 5)], ", "))
		}
	})
}
