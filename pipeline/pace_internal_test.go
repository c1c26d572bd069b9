package pipeline

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fakeClock is the pacer's clock and sleep: sleeping advances it, and each
// sleep lets the scripted in-flight count move on.
type fakeClock struct {
	now    time.Time
	slept  time.Duration
	sleeps int
	// busyUntil: pulls are in flight until then (zero: never).
	busyUntil time.Time
	always    bool
}

func (c *fakeClock) pacer() *pacer {
	return &pacer{
		inFlight: func() int64 {
			if c.always || c.now.Before(c.busyUntil) {
				return 1
			}
			return 0
		},
		now: func() time.Time { return c.now },
		sleep: func(ctx context.Context, d time.Duration) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if c.sleeps++; c.sleeps > 100_000 {
				return errors.New("the pacer does not stop sleeping")
			}
			c.now, c.slept = c.now.Add(d), c.slept+d
			return nil
		},
	}
}

func TestPacerYieldsBoundedWhilePullsAreInFlight(t *testing.T) {
	start := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		worked    time.Duration
		always    bool
		busyFor   time.Duration // from the start; 0: idle
		wantSlept time.Duration
	}{
		{name: "idle: no pause", worked: 50 * time.Millisecond},
		{name: "pulls all along: pauseFactor × the work", worked: 50 * time.Millisecond, always: true, wantSlept: pauseFactor * 50 * time.Millisecond},
		{name: "pulls all along, costly image: at most maxPause", worked: time.Minute, always: true, wantSlept: maxPause},
		{name: "pulls end: resumes once quiet", worked: 50 * time.Millisecond, busyFor: 30 * time.Millisecond, wantSlept: 30*time.Millisecond + quietFor},
		{name: "nothing worked: no pause", worked: 0, always: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &fakeClock{now: start, always: tc.always}
			if tc.busyFor > 0 {
				c.busyUntil = start.Add(tc.busyFor)
			}
			if err := c.pacer().yield(context.Background(), tc.worked); err != nil {
				t.Fatal(err)
			}
			if c.slept != tc.wantSlept {
				t.Fatalf("paused %s, want %s", c.slept, tc.wantSlept)
			}
		})
	}
}

// A pacer without an in-flight count (no proxy) never pauses, and a
// cancelled re-match stops pausing.
func TestPacerWithoutCountAndCancelled(t *testing.T) {
	c := &fakeClock{now: time.Now(), always: true}
	p := c.pacer()
	p.inFlight = nil
	if err := p.yield(context.Background(), time.Second); err != nil || c.slept != 0 {
		t.Fatalf("without a count: paused %s, %v", c.slept, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.pacer().yield(ctx, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// The bulk workers of a pipeline share one pacer: a pause is booked after
// those already booked, so two workers together keep the share one would
// (not twice it); pulls going quiet ends every booked pause.
func TestPacerSharesOneDutyCycle(t *testing.T) {
	start := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	c := &fakeClock{now: start, always: true}
	pc := c.pacer()
	work := 50 * time.Millisecond
	first, second := pc.reserve(work), pc.reserve(work) // two workers, same moment
	if want := start.Add(pauseFactor * work); !first.Equal(want) {
		t.Fatalf("first pause ends %s, want %s", first.Sub(start), want.Sub(start))
	}
	if want := start.Add(2 * pauseFactor * work); !second.Equal(want) {
		t.Fatalf("second pause ends %s, want %s (after the first)", second.Sub(start), want.Sub(start))
	}
	// A third worker yielding now waits for all three pauses.
	if err := pc.yield(context.Background(), work); err != nil {
		t.Fatal(err)
	}
	if want := 3 * pauseFactor * work; c.slept != want {
		t.Fatalf("third worker paused %s, want %s", c.slept, want)
	}
	// Pulls stop: the next pause starts from now, not after old bookings.
	pc.reserve(maxPause)
	c.always, c.busyUntil = false, time.Time{}
	if err := pc.yield(context.Background(), work); err != nil {
		t.Fatal(err)
	}
	pc.inFlight = func() int64 { return 1 }
	if got, want := pc.reserve(work), c.now.Add(pauseFactor*work); !got.Equal(want) {
		t.Fatalf("after pulls went quiet the pause ends %s from now, want %s", got.Sub(c.now), want.Sub(c.now))
	}
}

// Under a steady stream of small pulls the in-flight count is often zero
// at the instant a unit of work ends, between two requests: that is not
// quiet when pulls were seen while the work ran, and the unit still
// pauses. The old pacer read the count once and skipped the pause.
func TestPacerPausesAtAGapBetweenPulls(t *testing.T) {
	start := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	const worked = 20 * time.Millisecond
	c := &fakeClock{now: start}
	var gapAt time.Time // the count reads zero at this instant only
	p := c.pacer()
	p.inFlight = func() int64 {
		if c.now.Equal(gapAt) {
			return 0
		}
		return 1
	}
	for i := range 3 {
		c.now = c.now.Add(worked) // the unit of work
		if i > 0 {
			gapAt = c.now // it ends between two pulls
		}
		if err := p.yield(context.Background(), worked); err != nil {
			t.Fatal(err)
		}
	}
	if want := 3 * pauseFactor * worked; c.slept != want {
		t.Fatalf("paused %s in three units ending at gaps between pulls, want %s", c.slept, want)
	}

	// Pulls that stopped long before the unit ended leave it unpaused.
	c.now = c.now.Add(time.Second)
	gapAt, c.slept = c.now, 0
	p.inFlight = func() int64 { return 0 }
	if err := p.yield(context.Background(), worked); err != nil || c.slept != 0 {
		t.Fatalf("after the pulls stopped: paused %s, %v", c.slept, err)
	}
}

// A gap of a few time slices in a steady stream of pulls (a client
// descheduled on busy cores) does not end a pause.
func TestPacerPauseOutlastsAShortGapInPulls(t *testing.T) {
	start := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	const worked = 20 * time.Millisecond
	c := &fakeClock{now: start}
	p := c.pacer()
	gap := start.Add(30 * time.Millisecond) // no pull in flight for 30 ms from here
	p.inFlight = func() int64 {
		if !c.now.Before(gap) && c.now.Before(gap.Add(30*time.Millisecond)) {
			return 0
		}
		return 1
	}
	if err := p.yield(context.Background(), worked); err != nil {
		t.Fatal(err)
	}
	if want := pauseFactor * worked; c.slept != want {
		t.Fatalf("paused %s across a 30 ms gap in the pulls, want %s", c.slept, want)
	}
}
