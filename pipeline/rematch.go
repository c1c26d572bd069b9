package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/store"
)

// Rematch matches every stored inventory whose findings came from another
// database version again, without reading any layer, and decides again
// every verdict on those images. It returns how many results changed
// version.
func (p *Pipeline) Rematch(ctx context.Context) (int, error) {
	if p.o.Matcher == nil {
		return 0, nil
	}
	version := p.o.Matcher.Version()
	// A result matched against a newer database than ours (another
	// replica updated first) is left alone: this replica catches up.
	outdated := func(r store.ScanRecord) bool {
		return r.State == store.ScanDone && r.DBVersion != version && !builtAt(r.DBVersion).After(builtAt(version))
	}
	digests, err := p.digestsWhere(ctx, outdated)
	if err != nil {
		return 0, err
	}
	if len(digests) > 0 {
		// With the line WatchDB writes at the end, how long a re-match
		// took: it runs beside the pull path, which must stay fast.
		p.log.Info("re-matching stored inventories", "db_version", version, "images", len(digests))
	}
	n := 0
	// Images this update made fail are announced together, once the
	// re-match is done (or stopped).
	var failing []AffectedImage
	defer func() { p.announceNewlyVulnerable(version, failing) }()
	for _, d := range digests {
		before, err := p.storedVerdicts(ctx, d)
		if err != nil {
			return n, fmt.Errorf("read verdicts on %s: %w", d, err)
		}
		written, err := store.UpdateScan(ctx, p.o.Store, d, func(r *store.ScanRecord, exists bool) (bool, error) {
			if !exists || !outdated(*r) {
				return false, nil // changed since the listing
			}
			if r.Inventory == nil {
				// Nothing to match (a record written by hand or by an old
				// version): it keeps its findings; the others go on.
				p.log.Warn("re-match: stored result has no inventory", "digest", r.Digest)
				return false, nil
			}
			findings, dbVersion, err := p.match(ctx, r.Inventory)
			if err != nil {
				return false, err
			}
			r.Findings, r.DBVersion, r.UpdatedAt = findings, dbVersion, p.now()
			r.DBWarning = p.dbWarning(dbVersion)
			return true, nil
		})
		if err != nil {
			return n, err
		}
		if written == nil {
			continue
		}
		p.forget(digest.Digest(d))
		if err := p.decideAll(ctx, d, job{}); err != nil {
			return n, err
		}
		n++
		if after, err := p.storedVerdicts(ctx, d); err == nil {
			failing = append(failing, newlyFailing(before, after)...)
		} else {
			p.log.Warn("read verdicts after re-match", "digest", d, "err", err)
		}
	}
	return n, nil
}

// digestsWhere lists the digests of the stored records keep selects.
// Digests only: memory stays flat however many images are stored, and
// each record is read again when its turn comes.
func (p *Pipeline) digestsWhere(ctx context.Context, keep func(store.ScanRecord) bool) ([]string, error) {
	var out []string
	err := p.o.Store.Scans(ctx, func(r store.ScanRecord) bool {
		if keep(r) {
			out = append(out, r.Digest)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("list scans: %w", err)
	}
	return out, nil
}

// DBVersion is the database version WatchDB saw last ("" before it ran):
// cheap to ask, for readers that flag results matched against another.
func (p *Pipeline) DBVersion() string {
	v, _ := p.dbVersion.Load().(string)
	return v
}

// WatchDB re-matches stored inventories whenever the database version
// changes (an import or update, in this process or another), checking every
// interval until ctx ends.
func (p *Pipeline) WatchDB(ctx context.Context, interval time.Duration) {
	if p.o.Matcher == nil {
		return
	}
	last := ""
	var w dbWatch
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		v := p.o.Matcher.Version()
		p.dbVersion.Store(v)
		changed := false
		if v != last {
			start := time.Now()
			n, ran, err := p.rematchAlone(ctx)
			switch {
			case err != nil:
				p.log.Error("re-match after database change", "err", err)
			case !ran:
				// Another replica is re-matching: its images are announced
				// there; what it leaves to do is done at a later tick.
			default:
				changed = true
				last = v
				if n > 0 {
					p.log.Info("re-matched stored inventories", "db_version", v, "images", n, "seconds", time.Since(start).Seconds())
				}
			}
		}
		p.announceDB(&w, v, changed)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Re-matches run one at a time cluster-wide, under a lease: replicas that
// re-matched the same results at once would each announce a part of the
// images an update made fail, and do the work twice.
const (
	rematchLeaseKey = "rematch"
	rematchLease    = time.Minute
)

// rematchAlone runs Rematch under the re-match lease; ran is false when
// another replica holds it.
func (p *Pipeline) rematchAlone(ctx context.Context) (n int, ran bool, err error) {
	if p.o.Leases == nil {
		n, err = p.Rematch(ctx)
		return n, true, err
	}
	ok, err := p.o.Leases.Acquire(ctx, rematchLeaseKey, p.o.Consumer, rematchLease)
	if err != nil {
		return 0, false, fmt.Errorf("take the re-match lease: %w", err)
	}
	if !ok {
		return 0, false, nil
	}
	rctx, stop := p.keepRenewed(ctx, rematchLease/3, "re-match", func(ctx context.Context) (bool, error) {
		return p.o.Leases.Renew(ctx, rematchLeaseKey, p.o.Consumer, rematchLease)
	})
	n, err = p.Rematch(rctx)
	stop()
	if rerr := p.o.Leases.Release(context.WithoutCancel(ctx), rematchLeaseKey, p.o.Consumer); rerr != nil {
		p.log.Warn("release the re-match lease", "err", rerr)
	}
	return n, true, err
}
