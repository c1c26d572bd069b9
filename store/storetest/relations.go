package storetest

import (
	"context"
	"slices"
	"testing"

	"github.com/portcullis/portcullis/store"
)

// RunRelations: blob → image and index → child links, per repository, with
// each image's verdict in that repository.
func RunRelations(t *testing.T, newStore func(t *testing.T) store.Store) {
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
		// The gate stops at the first allowed image: so does the lookup.
		n = 0
		if err := s.BlobImages(ctx, "docker.io", "big/repo", layer, func(string, string) bool { n++; return n < 150 }); err != nil || n != 150 {
			t.Fatalf("BlobImages did not stop when told: %d calls, %v", n, err)
		}
		for i := range images {
			if err := s.LinkIndex(ctx, "docker.io", "big/repo", digestN(1<<21+i), []string{layer}); err != nil {
				t.Fatal(err)
			}
		}
		n = 0
		if err := s.Parents(ctx, "docker.io", "big/repo", layer, func(string) bool { n++; return true }); err != nil || n != images {
			t.Fatalf("parents of a much-listed child: %d, %v; want %d", n, err, images)
		}
		n = 0
		if err := s.Parents(ctx, "docker.io", "big/repo", layer, func(string) bool { n++; return n < 150 }); err != nil || n != 150 {
			t.Fatalf("Parents did not stop when told: %d calls, %v", n, err)
		}
	})
}
