package storetest

import (
	"context"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/store"
)

// RunCounters: hourly buckets that add up across writers, read back over
// a window of at most a day and an hour, bounded in what they take.
func RunCounters(t *testing.T, newCounters func(t *testing.T) store.Counters) {
	ctx := context.Background()
	now := time.Now()
	t.Run("counters add up by the hour", func(t *testing.T) {
		c := newCounters(t)
		adds := []struct {
			at     time.Time
			counts map[string]int64
		}{
			{now, map[string]int64{"VULNERABLE": 2, "UNSIGNED": 1}},
			{now, map[string]int64{"VULNERABLE": 3}},
			{now.Add(-2 * time.Hour), map[string]int64{"TOO_OLD": 4}},
			{now.Add(-23 * time.Hour), map[string]int64{"OTHER": 5}},
			{now.Add(-30 * time.Hour), map[string]int64{"VULNERABLE": 100}}, // past the window
			{now, map[string]int64{}},
		}
		for _, a := range adds {
			if err := c.Add(ctx, "blocked", a.at, a.counts); err != nil {
				t.Fatalf("Add(%v, %v): %v", a.at, a.counts, err)
			}
		}
		if err := c.Add(ctx, "other-counter", now, map[string]int64{"VULNERABLE": 7}); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			since time.Time
			want  map[string]int64
		}{
			{now.Add(-24 * time.Hour), map[string]int64{"VULNERABLE": 5, "UNSIGNED": 1, "TOO_OLD": 4, "OTHER": 5}},
			{now.Add(-time.Hour), map[string]int64{"VULNERABLE": 5, "UNSIGNED": 1}},
			{now.Add(-100 * time.Hour), map[string]int64{"VULNERABLE": 5, "UNSIGNED": 1, "TOO_OLD": 4, "OTHER": 5}}, // at most 25 buckets
			{now.Add(time.Hour), map[string]int64{}},
		} {
			got, err := c.Sum(ctx, "blocked", tc.since)
			if err != nil || !maps.Equal(got, tc.want) {
				t.Errorf("Sum(since %v ago) = %v, %v; want %v", now.Sub(tc.since), got, err, tc.want)
			}
		}
		if got, err := c.Sum(ctx, "never-written", now.Add(-24*time.Hour)); err != nil || len(got) != 0 {
			t.Errorf("Sum of a counter never written = %v, %v; want empty", got, err)
		}
	})
	t.Run("counters from concurrent writers", func(t *testing.T) {
		c := newCounters(t)
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 10 {
					if err := c.Add(ctx, "blocked", now, map[string]int64{"VULNERABLE": 1, "UNSIGNED": 2}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		got, err := c.Sum(ctx, "blocked", now.Add(-time.Minute))
		if want := map[string]int64{"VULNERABLE": 80, "UNSIGNED": 160}; err != nil || !maps.Equal(got, want) {
			t.Fatalf("Sum = %v, %v; want %v (a lost update)", got, err, want)
		}
	})
	t.Run("counters refuse what is unbounded", func(t *testing.T) {
		c := newCounters(t)
		many := map[string]int64{}
		for i := range 65 {
			many[strings.Repeat("x", i+1)] = 1
		}
		for _, tc := range []struct {
			name   string
			counts map[string]int64
		}{
			{"", map[string]int64{"A": 1}},
			{strings.Repeat("n", 65), map[string]int64{"A": 1}},
			{"a\x00b", map[string]int64{"A": 1}},
			{"blocked", map[string]int64{"": 1}},
			{"blocked", map[string]int64{strings.Repeat("f", 65): 1}},
			{"blocked", map[string]int64{"A": -1}},
			{"blocked", many},
		} {
			if err := c.Add(ctx, tc.name, now, tc.counts); err == nil {
				t.Errorf("Add(%q, %d fields) took it", tc.name, len(tc.counts))
			}
		}
		if got, err := c.Sum(ctx, "blocked", now.Add(-time.Hour)); err != nil || len(got) != 0 {
			t.Errorf("refused adds left %v, %v", got, err)
		}
		if _, err := c.Sum(ctx, "", now); err == nil {
			t.Error("Sum of an empty name answered")
		}
	})
}
