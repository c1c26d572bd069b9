package store_test

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/store"
)

// failingCounters refuses every Add while failing is set.
type failingCounters struct {
	store.Counters
	mu      sync.Mutex
	failing bool
	adds    int
}

func (f *failingCounters) Add(ctx context.Context, name string, at time.Time, counts map[string]int64) error {
	f.mu.Lock()
	f.adds++
	failing := f.failing
	f.mu.Unlock()
	if failing {
		return errors.New("store away")
	}
	return f.Counters.Add(ctx, name, at, counts)
}

// TestTally: a flood of events is one write per flush; names outside the
// fixed set count as OTHER (the map stays bounded); a failed flush keeps
// its counts for the next one.
func TestTally(t *testing.T) {
	ctx := context.Background()
	b, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	fc := &failingCounters{Counters: b}
	tally := store.NewTally(fc, "blocked-pulls", []string{"VULNERABLE", "UNSIGNED"}, nil)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 1000 {
				switch {
				case j%2 == 0:
					tally.Inc("VULNERABLE")
				case i == 0:
					tally.Inc("UNSIGNED")
				default:
					tally.Inc("made-up-" + string(rune('a'+j%26))) // hostile variety
				}
			}
		})
	}
	wg.Wait()
	if got := tally.Pending(); len(got) != 3 {
		t.Fatalf("pending holds %d fields (%v), want 3: VULNERABLE, UNSIGNED, OTHER", len(got), got)
	}
	fc.failing = true
	if err := tally.Flush(ctx); err == nil {
		t.Fatal("flush to a failing store reported no error")
	}
	tally.Inc("VULNERABLE")
	fc.failing = false
	if err := tally.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tally.Flush(ctx); err != nil { // nothing pending: no write
		t.Fatal(err)
	}
	if fc.adds != 2 {
		t.Errorf("%d writes to the store, want 2 (one failed, one done; none when nothing is pending)", fc.adds)
	}
	got, err := b.Sum(ctx, "blocked-pulls", time.Now().Add(-time.Hour))
	if want := map[string]int64{"VULNERABLE": 2001, "UNSIGNED": 500, "OTHER": 1500}; err != nil || !maps.Equal(got, want) {
		t.Fatalf("stored %v, %v; want %v", got, err, want)
	}
}

// TestTallyRunFlushesAtTheEnd: what was counted before shutdown is stored.
func TestTallyRunFlushesAtTheEnd(t *testing.T) {
	b, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tally := store.NewTally(b, "blocked-pulls", []string{"VULNERABLE"}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tally.Run(ctx, time.Hour); close(done) }()
	tally.Inc("VULNERABLE")
	cancel()
	<-done
	got, err := b.Sum(context.Background(), "blocked-pulls", time.Now().Add(-time.Hour))
	if err != nil || got["VULNERABLE"] != 1 {
		t.Fatalf("after Run ended: %v, %v; want VULNERABLE 1", got, err)
	}
}
