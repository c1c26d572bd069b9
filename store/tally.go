package store

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"
)

// Tally counts events in memory and adds them to shared Counters now and
// then: a flood of refused pulls costs a map increment each and one store
// write per interval, not a write per pull. Its map holds at most the
// fields it was made with plus Other, whatever names callers pass.
type Tally struct {
	counters Counters
	name     string
	known    map[string]bool // read-only after NewTally
	log      *slog.Logger
	mu       sync.Mutex
	pending  map[string]int64
}

// TallyOther is the field counting every name a Tally was not made with.
const TallyOther = "OTHER"

// NewTally counts fields of counter name into c; any other field, or an
// empty one, counts as TallyOther.
func NewTally(c Counters, name string, fields []string, log *slog.Logger) *Tally {
	known := map[string]bool{TallyOther: true}
	for _, f := range fields {
		known[f] = true
	}
	if log == nil {
		log = slog.Default()
	}
	return &Tally{counters: c, name: name, known: known, log: log, pending: map[string]int64{}}
}

// Inc counts one event of field; no I/O.
func (t *Tally) Inc(field string) {
	if !t.known[field] {
		field = TallyOther
	}
	t.mu.Lock()
	t.pending[field]++
	t.mu.Unlock()
}

// Flush adds what was counted since the last flush to the counters. On
// failure the counts are kept for the next flush (the map stays bounded:
// its fields are fixed).
func (t *Tally) Flush(ctx context.Context) error {
	t.mu.Lock()
	counts := t.pending
	t.pending = map[string]int64{}
	t.mu.Unlock()
	if len(counts) == 0 {
		return nil
	}
	if err := t.counters.Add(ctx, t.name, time.Now(), counts); err != nil {
		t.mu.Lock()
		for f, n := range t.pending {
			counts[f] += n
		}
		t.pending = counts
		t.mu.Unlock()
		return err
	}
	return nil
}

// Pending reports what was counted and not flushed yet (tests, logs).
func (t *Tally) Pending() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.pending)
}

// Run flushes every interval until ctx ends, then once more (bounded by a
// few seconds) so a graceful shutdown loses nothing counted.
func (t *Tally) Run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if err := t.Flush(ctx); err != nil {
				t.log.Warn("flush counter; kept for the next try", "counter", t.name, "err", err)
			}
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := t.Flush(final); err != nil {
				t.log.Warn("flush counter at shutdown; counts lost", "counter", t.name, "err", err)
			}
			cancel()
			return
		}
	}
}
