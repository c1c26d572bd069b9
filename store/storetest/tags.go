package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/store"
)

// RunTags: the tag cache (tag → digest resolutions) and its concurrent writers.
func RunTags(t *testing.T, newStore func(t *testing.T) store.Store) {
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
}
