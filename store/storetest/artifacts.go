package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/store"
)

// RunArtifacts: published referrers, their reference-counted contents,
// the bounded AddContents, and local tags.
func RunArtifacts(t *testing.T, newStore func(t *testing.T) store.Store) {
	ctx := context.Background()
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
	t.Run("concurrent publishers", func(t *testing.T) {
		// Subjects published and replaced at the same time share content:
		// it lives exactly as long as one of them keeps it.
		s := newStore(t)
		const subjects = 8
		shared := map[string]store.Content{"sha256:shared": {MediaType: "b", Body: []byte("s")}}
		each := func(from, to int, fn func(i int) error) {
			t.Helper()
			var wg sync.WaitGroup
			for i := from; i < to; i++ {
				wg.Go(func() {
					if err := fn(i); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
		}
		each(0, subjects, func(i int) error {
			return s.PutReferrers(ctx, digestN(i), []json.RawMessage{[]byte(`{}`)}, shared)
		})
		each(1, subjects, func(i int) error { return s.PutReferrers(ctx, digestN(i), nil, nil) })
		if _, err := s.Content(ctx, "sha256:shared"); err != nil {
			t.Fatalf("content one subject still keeps: %v", err)
		}
		if err := s.PutReferrers(ctx, digestN(0), nil, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Content(ctx, "sha256:shared"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("content no subject keeps: %v, want ErrNotFound", err)
		}
		// Concurrent additions to one subject: none is lost.
		subject := digestN(100)
		each(0, 8, func(i int) error {
			return s.AddContents(ctx, subject, map[string]store.Content{fmt.Sprintf("sha256:c%d", i): {MediaType: "m", Body: []byte{byte(i)}}})
		})
		for i := range 8 {
			if _, err := s.Content(ctx, fmt.Sprintf("sha256:c%d", i)); err != nil {
				t.Errorf("concurrently added content %d: %v", i, err)
			}
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
}
