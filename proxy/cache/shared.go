package cache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
)

// Leases let replicas that share one storage take turns: the one holding a
// digest's lease downloads it, the others wait for the object to appear in
// the shared storage and serve it from there, so a blob is fetched from
// its upstream once however many replicas are asked for it. A lease runs
// out when its holder stops renewing it (it died), and another replica
// takes over.
type Leases interface {
	Acquire(ctx context.Context, key, owner string, ttl time.Duration) (bool, error)
	Renew(ctx context.Context, key, owner string, ttl time.Duration) (bool, error)
	Release(ctx context.Context, key, owner string) error
}

// FetcherOption configures a Fetcher.
type FetcherOption func(*Fetcher)

// WithLeases makes downloads cluster-wide single-flight: owner names this
// replica in the leases.
func WithLeases(l Leases, owner string) FetcherOption {
	return func(f *Fetcher) { f.leases, f.owner = l, owner }
}

const (
	// downloadLease is how long a replica's claim on a download lasts
	// without renewal: long enough to ride out a pause, short enough that
	// a crashed replica's clients do not wait long.
	downloadLease = 15 * time.Second
	// maxStoredPoll bounds the wait between looks for a blob another
	// replica is downloading.
	maxStoredPoll = time.Second
)

// errStoredElsewhere tells the requests joined to a download that another
// replica stored the blob meanwhile: they open it from the store.
var errStoredElsewhere = errors.New("stored by another replica")

func leaseKey(d digest.Digest) string { return "blob/" + d.String() }

// takeTurn waits until this replica may download d: it holds d's lease
// (release must be called when the download ends), or d appeared in the
// shared storage (errStoredElsewhere). Without leases, or when they cannot
// be reached, it downloads at once: a duplicate download beats none.
func (f *Fetcher) takeTurn(ctx context.Context, d digest.Digest) (release func(), err error) {
	noop := func() {}
	if f.leases == nil {
		return noop, nil
	}
	wait := 50 * time.Millisecond
	for {
		ok, err := f.leases.Acquire(ctx, leaseKey(d), f.owner, downloadLease)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			f.log.Warn("download lease unavailable; downloading without it", "digest", d, "err", err)
			return noop, nil
		}
		if ok {
			release := f.holdLease(d)
			// The previous holder may have stored it just before letting go.
			switch _, err := f.store.Stat(ctx, d); {
			case err == nil:
				release()
				return nil, errStoredElsewhere
			case !errors.Is(err, ErrNotFound):
				release()
				return nil, fmt.Errorf("look for blob %s in the shared storage: %w", d, err)
			}
			return release, nil
		}
		// Another replica downloads it; it appears in the shared storage
		// once verified, or its lease runs out.
		switch _, err := f.store.Stat(ctx, d); {
		case err == nil:
			return nil, errStoredElsewhere
		case !errors.Is(err, ErrNotFound):
			return nil, fmt.Errorf("look for blob %s in the shared storage: %w", d, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for another replica's download of %s: %w", d, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, maxStoredPoll)
	}
}

// holdLease renews d's lease until the returned function is called, which
// releases it.
func (f *Fetcher) holdLease(d digest.Digest) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(downloadLease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), downloadLease/3)
				ok, err := f.leases.Renew(ctx, leaseKey(d), f.owner, downloadLease)
				cancel()
				if err != nil || !ok {
					// Keep downloading: the commit is idempotent, and at
					// worst another replica fetches it too.
					f.log.Warn("download lease lost", "digest", d, "err", err)
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.leases.Release(ctx, leaseKey(d), f.owner); err != nil {
			f.log.Warn("release download lease", "digest", d, "err", err)
		}
	}
}
