package pipeline

import (
	"context"
	"sync"
	"time"
)

// The re-match runs beside the pull path on the same cores. It yields by
// a duty cycle rather than by priorities Go does not have: after each
// image, while pull requests are in flight, it pauses for pauseFactor
// times the time that image took (so it keeps at most 1/(1+pauseFactor) of
// the time it would use, about a tenth, however costly its images are:
// with a fifth, pulls still ran at 0.55-0.75× their idle rate on 2 cores),
// and resumes as soon as the proxy has been quiet for quietFor. The pause
// is bounded (pauseFactor×work, at most maxPause), so a constant stream of
// pulls slows the re-match down but never stops it; with no pulls it never
// pauses at all.
const (
	pauseFactor = 9
	maxPause    = time.Second
	// quietFor is long enough to outlast the gaps of a steady stream of
	// pulls on busy cores: with 10 ms, a client descheduled for a few
	// time slices ended the pause, the bulk work then took a core, and
	// the clients got less time still (a profile of warm manifest GETs
	// from 4 clients showed the re-match and publishers at a third of a
	// core, paced as if idle).
	quietFor = 100 * time.Millisecond
	pacePoll = 2 * time.Millisecond
)

// pacer is the duty cycle above, one per pipeline, shared by all its bulk
// work (the re-match, re-deciding under a new policy, publishing): each
// pause is reserved after the pauses already reserved, so together they
// keep about 1/(1+pauseFactor) of the time, not that much each. The clock
// and the sleep are fields so the tests drive it without timing anything.
type pacer struct {
	inFlight func() int64 // pull requests being served now; nil: never pause
	now      func() time.Time
	sleep    func(ctx context.Context, d time.Duration) error

	mu       sync.Mutex
	resumeAt time.Time // end of the pauses reserved so far
	// lastPull is when a pull was last seen in flight. The count is read
	// at instants only, and under a steady stream of small pulls (warm
	// manifests) it is often zero between two requests: read alone at
	// the end of a unit of work, it let most units skip their pause (a
	// CPU profile of a busy window showed the re-match at two to three
	// times its share).
	lastPull time.Time
}

func newPacer(inFlight func() int64) *pacer {
	return &pacer{inFlight: inFlight, now: time.Now, sleep: sleepCtx}
}

// reserve books a pause for work that took worked, after those already
// booked, and returns when it ends.
func (pc *pacer) reserve(worked time.Duration) time.Time {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	start := pc.now()
	if pc.resumeAt.After(start) {
		start = pc.resumeAt
	}
	pc.resumeAt = start.Add(min(pauseFactor*worked, maxPause))
	return pc.resumeAt
}

// quiet ends every pause booked: pulls stopped, the bulk work may run.
func (pc *pacer) quiet() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.resumeAt = time.Time{}
}

// yield pauses after work that took worked, as the duty cycle says; it
// returns early with ctx's error when ctx ends. The wait is bounded by
// maxPause for each worker sharing the pacer.
func (pc *pacer) yield(ctx context.Context, worked time.Duration) error {
	if pc.inFlight == nil || worked <= 0 {
		return nil
	}
	if !pc.pulling(worked) {
		pc.quiet()
		return nil
	}
	deadline := pc.reserve(worked)
	var quietSince time.Time
	for {
		now := pc.now()
		if !now.Before(deadline) {
			return nil
		}
		if pc.inFlight() > 0 {
			quietSince = time.Time{}
			pc.sawPull(now)
		} else if quietSince.IsZero() {
			quietSince = now
		} else if now.Sub(quietSince) >= quietFor {
			pc.quiet()
			return nil
		}
		if err := pc.sleep(ctx, min(pacePoll, deadline.Sub(now))); err != nil {
			return err
		}
	}
}

// pulling reports whether pulls are in flight now, or were seen while the
// work that took worked ran or quietFor before it: a zero count between
// two pulls of a steady stream is not quiet.
func (pc *pacer) pulling(worked time.Duration) bool {
	now := pc.now()
	if pc.inFlight() > 0 {
		pc.sawPull(now)
		return true
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return !pc.lastPull.IsZero() && now.Sub(pc.lastPull) < worked+quietFor
}

func (pc *pacer) sawPull(at time.Time) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if at.After(pc.lastPull) {
		pc.lastPull = at
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
