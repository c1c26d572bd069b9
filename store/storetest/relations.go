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

func digestN(n int) string { return fmt.Sprintf("sha256:%064x", n) }

// runDecisions: verdicts are kept per (digest, upstream, repository), with
// the same compare-and-swap as scan records.
func runDecisions(t *testing.T, newStore func(t *testing.T) store.Store) {
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
}

// runRelations: blob → image and index → child links, per repository, with
// each image's verdict in that repository.
func runRelations(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
	blobImages := func(t *testing.T, s store.Store, upstream, repo, blob string) []string {
		t.Helper()
		var out []string
		err := s.BlobImages(ctx, upstream, repo, blob, func(image, verdict string) bool {
			out = append(out, image+"="+verdict)
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(out)
		return out
	}
	t.Run("blob links per repository", func(t *testing.T) {
		s := newStore(t)
		img1, img2, layer, cfg := digestN(1), digestN(2), digestN(10), digestN(11)
		if err := s.LinkImage(ctx, "docker.io", "library/alpine", img1, []store.BlobRef{{Digest: cfg, Size: 300}, {Digest: layer, Size: 4000}}); err != nil {
			t.Fatal(err)
		}
		if err := s.LinkImage(ctx, "docker.io", "library/alpine", img2, []store.BlobRef{{Digest: layer, Size: 4000}}); err != nil {
			t.Fatal(err)
		}
		// Linking again changes nothing; an unknown size keeps a known one.
		if err := s.LinkImage(ctx, "docker.io", "library/alpine", img2, []store.BlobRef{{Digest: layer, Size: -1}}); err != nil {
			t.Fatal(err)
		}
		if got, want := blobImages(t, s, "docker.io", "library/alpine", layer), []string{img1 + "=", img2 + "="}; !slices.Equal(got, want) {
			t.Fatalf("images with the layer: %v, want %v", got, want)
		}
		if got := blobImages(t, s, "docker.io", "someone/alpine", layer); len(got) != 0 {
			t.Fatalf("another repository sees this one's links: %v", got)
		}
		d := store.DecisionRecord{Digest: img1, Upstream: "docker.io", Repository: "library/alpine", Verdict: "block"}
		if err := s.PutDecision(ctx, &d); err != nil {
			t.Fatal(err)
		}
		other := store.DecisionRecord{Digest: img2, Upstream: "docker.io", Repository: "someone/alpine", Verdict: "allow"}
		if err := s.PutDecision(ctx, &other); err != nil {
			t.Fatal(err)
		}
		if got, want := blobImages(t, s, "docker.io", "library/alpine", layer), []string{img1 + "=block", img2 + "="}; !slices.Equal(got, want) {
			t.Fatalf("verdicts of the images with the layer: %v, want %v (another repository's verdict must not count)", got, want)
		}
		for _, c := range []struct {
			repo, blob string
			want       bool
			size       int64
		}{{"library/alpine", layer, true, 4000}, {"library/alpine", cfg, true, 300}, {"someone/alpine", layer, false, -1}, {"library/alpine", digestN(99), false, -1}} {
			if size, got, err := s.BlobLink(ctx, "docker.io", c.repo, c.blob); err != nil || got != c.want || size != c.size {
				t.Errorf("BlobLink(%s, %s) = %d, %v, %v; want %d, %v", c.repo, c.blob, size, got, err, c.size, c.want)
			}
		}
		if err := s.LinkBlob(ctx, "docker.io", "someone/alpine", store.BlobRef{Digest: layer, Size: -1}); err != nil {
			t.Fatal(err)
		}
		if size, got, err := s.BlobLink(ctx, "docker.io", "someone/alpine", layer); err != nil || !got || size != -1 {
			t.Fatalf("confirmed blob: %d, %v, %v; want linked, size unknown", size, got, err)
		}
		if got := blobImages(t, s, "docker.io", "someone/alpine", layer); len(got) != 0 {
			t.Fatalf("a confirmed blob names no image, got %v", got)
		}
	})
	t.Run("index parents per repository", func(t *testing.T) {
		s := newStore(t)
		child := digestN(5)
		for _, idx := range []string{digestN(1), digestN(2)} {
			if err := s.LinkIndex(ctx, "ghcr.io", "org/app", idx, []string{child, digestN(6)}); err != nil {
				t.Fatal(err)
			}
		}
		var parents []string
		if err := s.Parents(ctx, "ghcr.io", "org/app", child, func(i string) bool { parents = append(parents, i); return true }); err != nil {
			t.Fatal(err)
		}
		slices.Sort(parents)
		if want := []string{digestN(1), digestN(2)}; !slices.Equal(parents, want) {
			t.Fatalf("parents: %v, want %v", parents, want)
		}
		n := 0
		if err := s.Parents(ctx, "ghcr.io", "other/app", child, func(string) bool { n++; return true }); err != nil || n != 0 {
			t.Fatalf("another repository sees this one's indexes: %d, %v", n, err)
		}
	})
	t.Run("many links", func(t *testing.T) {
		// Many images share a base layer: every link is kept.
		s := newStore(t)
		layer := digestN(1 << 30)
		const images = 500
		for i := range images {
			if err := s.LinkImage(ctx, "docker.io", "big/repo", digestN(i), []store.BlobRef{{Digest: layer, Size: 1}, {Digest: digestN(1<<20 + i), Size: 2}}); err != nil {
				t.Fatal(err)
			}
		}
		n := 0
		if err := s.BlobImages(ctx, "docker.io", "big/repo", layer, func(string, string) bool { n++; return true }); err != nil || n != images {
			t.Fatalf("images with the shared layer: %d, %v; want %d", n, err, images)
		}
	})
}
