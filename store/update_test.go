package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/portcullis/portcullis/store"
)

// Concurrent read-modify-write updates of one record all land: each
// redoes its change on the record another writer left.
func TestUpdatesLoseNothing(t *testing.T) {
	s, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	d := fmt.Sprintf("sha256:%064x", 1)
	var wg sync.WaitGroup
	var landed atomic.Int32
	for i := range 4 {
		wg.Go(func() {
			w, err := store.UpdateDecision(ctx, s, d, "docker.io", "a/b", func(r *store.DecisionRecord) (bool, error) {
				r.History = append(r.History, store.VerdictChange{To: fmt.Sprint(i)})
				return true, nil
			})
			if err != nil && !errors.Is(err, store.ErrConflict) {
				t.Error(err)
			}
			if w != nil {
				landed.Add(1)
			}
		})
	}
	wg.Wait()
	r, err := s.Decision(ctx, d, "docker.io", "a/b")
	if err != nil {
		t.Fatal(err)
	}
	// Every update that said it landed is in the record: none overwrote
	// another's change.
	if int(landed.Load()) != len(r.History) || landed.Load() == 0 {
		t.Fatalf("%d updates landed, %d changes kept", landed.Load(), len(r.History))
	}
	created, err := store.UpdateScan(ctx, s, d, func(r *store.ScanRecord, exists bool) (bool, error) {
		if exists {
			t.Fatal("a record that was never written exists")
		}
		r.State = store.ScanPending
		return true, nil
	})
	if err != nil || created.Revision != 1 || created.Digest != d {
		t.Fatalf("created %+v, %v", created, err)
	}
	left, err := store.UpdateScan(ctx, s, d, func(*store.ScanRecord, bool) (bool, error) { return false, nil })
	if err != nil || left != nil {
		t.Fatalf("left alone: %+v, %v", left, err)
	}
}

func TestAddTagSeen(t *testing.T) {
	many := []string{"t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9", "t10"}
	for _, c := range []struct {
		tags []string
		tag  string
		want []string
	}{
		{nil, "1.0", []string{"1.0"}},
		{[]string{"1.0"}, "latest", []string{"latest", "1.0"}},
		{[]string{"latest", "1.0"}, "1.0", []string{"1.0", "latest"}},
		{many, "new", append([]string{"new"}, many[:9]...)},
	} {
		if got := store.AddTagSeen(c.tags, c.tag); !slices.Equal(got, c.want) {
			t.Errorf("AddTagSeen(%v, %s) = %v, want %v", c.tags, c.tag, got, c.want)
		}
	}
}
