package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/store"
)

// RunDecisions: verdicts are kept per (digest, upstream, repository), with
// the same compare-and-swap as scan records.
func RunDecisions(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
	t.Run("decisions per repository", func(t *testing.T) {
		s := newStore(t)
		d := digestN(1)
		if _, err := s.Decision(ctx, d, "docker.io", "library/alpine"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("missing decision: %v", err)
		}
		at := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
		for _, r := range []store.DecisionRecord{
			{Digest: d, Upstream: "docker.io", Repository: "library/alpine", Verdict: "block", Rule: "strict", UpdatedAt: at},
			{Digest: d, Upstream: "docker.io", Repository: "someone/alpine", Verdict: "allow", Rule: "lax", UpdatedAt: at},
			{Digest: d, Upstream: "ghcr.io", Repository: "library/alpine", Verdict: "warn", UpdatedAt: at},
			{Digest: digestN(2), Upstream: "docker.io", Repository: "library/alpine", Verdict: "allow", UpdatedAt: at},
		} {
			if err := s.PutDecision(ctx, &r); err != nil || r.Revision != 1 {
				t.Fatalf("put %+v: %v", r, err)
			}
		}
		got, err := s.Decision(ctx, d, "docker.io", "library/alpine")
		if err != nil || got.Verdict != "block" || got.Rule != "strict" || got.Revision != 1 || !got.UpdatedAt.Equal(at) {
			t.Fatalf("round trip: %+v, %v", got, err)
		}
		var repos []string
		err = s.Decisions(ctx, d, func(r store.DecisionRecord) bool {
			repos = append(repos, r.Upstream+"/"+r.Repository+"="+r.Verdict)
			return true
		})
		slices.Sort(repos)
		if want := []string{"docker.io/library/alpine=block", "docker.io/someone/alpine=allow", "ghcr.io/library/alpine=warn"}; err != nil || !slices.Equal(repos, want) {
			t.Fatalf("Decisions(%s) = %v, %v; want %v", d, repos, err, want)
		}
		n := 0
		if err := s.Decisions(ctx, "", func(store.DecisionRecord) bool { n++; return true }); err != nil || n != 4 {
			t.Fatalf("all decisions: %d, %v", n, err)
		}
		n = 0
		if err := s.Decisions(ctx, "", func(store.DecisionRecord) bool { n++; return false }); err != nil || n != 1 {
			t.Fatalf("Decisions did not stop when fn said so: %d, %v", n, err)
		}
	})
	t.Run("decisions from a digest on", func(t *testing.T) {
		s := newStore(t)
		// More digests than one batch of a store's index read, and two
		// repositories each.
		for i := range 250 {
			for _, repo := range []string{"a/x", "b/y"} {
				r := store.DecisionRecord{Digest: digestN(2 * i), Upstream: "docker.io", Repository: repo, Verdict: "allow"}
				if err := s.PutDecision(ctx, &r); err != nil {
					t.Fatal(err)
				}
			}
		}
		for _, tc := range []struct {
			from       string
			stopAfter  int
			wantFirst  string
			wantCount  int
			wantDigest int // distinct digests seen
		}{
			{"", 0, digestN(0), 500, 250},
			{digestN(0), 0, digestN(0), 500, 250},
			{digestN(200), 0, digestN(200), 300, 150},
			{digestN(201), 0, digestN(202), 298, 149}, // not stored: the next one
			{digestN(498), 0, digestN(498), 2, 1},
			{digestN(499), 0, "", 0, 0},
			{digestN(100), 3, digestN(100), 3, 2},
		} {
			var seen []string
			err := s.DecisionsFrom(ctx, tc.from, func(r store.DecisionRecord) bool {
				seen = append(seen, r.Digest)
				return tc.stopAfter == 0 || len(seen) < tc.stopAfter
			})
			if err != nil {
				t.Fatalf("DecisionsFrom(%q): %v", tc.from, err)
			}
			first := ""
			if len(seen) > 0 {
				first = seen[0]
			}
			if first != tc.wantFirst || len(seen) != tc.wantCount || len(slices.Compact(slices.Clone(seen))) != tc.wantDigest || !slices.IsSorted(seen) {
				t.Errorf("DecisionsFrom(%q): first %q, %d records, %d digests, sorted %v; want %q, %d, %d, sorted",
					tc.from, first, len(seen), len(slices.Compact(slices.Clone(seen))), slices.IsSorted(seen), tc.wantFirst, tc.wantCount, tc.wantDigest)
			}
		}
	})
	runDecisionsByTime(t, newStore)
	t.Run("decision revisions", func(t *testing.T) {
		s := newStore(t)
		r := store.DecisionRecord{Digest: digestN(1), Upstream: "docker.io", Repository: "a/b", Verdict: "allow"}
		if err := s.PutDecision(ctx, &r); err != nil {
			t.Fatal(err)
		}
		stale := r
		stale.Revision = 0
		if err := s.PutDecision(ctx, &stale); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("write from a stale read: %v, want ErrConflict", err)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			w := r
			w.Verdict = fmt.Sprint("v", i)
			wg.Go(func() {
				if s.PutDecision(ctx, &w) == nil {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d concurrent writers from one read won, want 1", wins.Load())
		}
	})
	t.Run("decisions on many digests", func(t *testing.T) {
		s := newStore(t)
		const digests = 250
		for i := range digests {
			for _, repo := range []string{"a/b", "c/d"} {
				r := store.DecisionRecord{Digest: digestN(i), Upstream: "docker.io", Repository: repo, Verdict: "allow"}
				if err := s.PutDecision(ctx, &r); err != nil {
					t.Fatal(err)
				}
			}
		}
		seen := map[string]int{}
		if err := s.Decisions(ctx, "", func(r store.DecisionRecord) bool { seen[r.Digest+" "+r.Repository]++; return true }); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 2*digests {
			t.Fatalf("Decisions visited %d distinct verdicts, want %d", len(seen), 2*digests)
		}
		n := 0
		if err := s.Decisions(ctx, "", func(store.DecisionRecord) bool { n++; return n < 301 }); err != nil || n != 301 {
			t.Fatalf("Decisions did not stop when told: %d calls, %v", n, err)
		}
	})
	t.Run("decisions in many repositories", func(t *testing.T) {
		// One digest decided in more repositories than one read batch
		// holds, between digests decided in one: every verdict is visited,
		// by digest and all alike.
		s := newStore(t)
		const repos = 250
		wide := digestN(2)
		for i := range repos {
			r := store.DecisionRecord{Digest: wide, Upstream: "docker.io", Repository: fmt.Sprintf("org/app%d", i), Verdict: "allow"}
			if err := s.PutDecision(ctx, &r); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []string{digestN(1), digestN(3)} {
			r := store.DecisionRecord{Digest: d, Upstream: "ghcr.io", Repository: "a/b", Verdict: "block"}
			if err := s.PutDecision(ctx, &r); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []struct {
			digest string
			want   int
		}{{wide, repos}, {"", repos + 2}} {
			seen := map[string]int{}
			if err := s.Decisions(ctx, c.digest, func(r store.DecisionRecord) bool {
				seen[r.Digest+" "+r.Upstream+"/"+r.Repository]++
				return true
			}); err != nil {
				t.Fatal(err)
			}
			if len(seen) != c.want {
				t.Fatalf("Decisions(%q) visited %d distinct verdicts, want %d", c.digest, len(seen), c.want)
			}
		}
		n := 0
		if err := s.Decisions(ctx, "", func(store.DecisionRecord) bool { n++; return n < 120 }); err != nil || n != 120 {
			t.Fatalf("Decisions did not stop when told: %d calls, %v", n, err)
		}
	})
}
