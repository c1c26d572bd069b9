package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

// Rematch matches every stored inventory whose findings came from another
// database version again, without reading any layer. Where the store keeps
// match marks (store.MatchMarker), the outcome is written apart from the
// record, a batch per commit, and the record (inventory included) is not
// rewritten: an image whose findings and database warning come out the
// same gets only a mark, and its verdicts, made on the same findings,
// stand (no decision, no publication); an image whose findings changed
// gets its new result marked, then every verdict on it decided again (and
// published). Between images it yields to the pull path (pace.go). It
// returns how many results changed version either way.
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
	rm := rematcher{p: p, outdated: outdated, pace: p.pace, before: map[string]map[string]store.DecisionRecord{}}
	rm.marker, _ = p.o.Store.(store.MatchMarker)
	// Images this update made fail are announced together, once the
	// re-match is done (or stopped).
	defer func() { p.announceNewlyVulnerable(version, rm.failing) }()
	for _, d := range digests {
		started := time.Now()
		if err := rm.one(ctx, d); err != nil {
			return rm.n, errors.Join(err, rm.keepSame(ctx))
		}
		if err := rm.pace.yield(ctx, time.Since(started)); err != nil {
			return rm.n, errors.Join(err, rm.keepSame(ctx))
		}
		if len(rm.marks) >= store.MaxMatchMarks || len(rm.before) >= maxPendingResults {
			if err := rm.flush(ctx); err != nil {
				return rm.n, err
			}
		}
	}
	return rm.n, rm.flush(ctx)
}

// maxPendingResults bounds the new results (findings lists) held for one
// commit, and how long their verdicts wait to be decided again.
const maxPendingResults = 32

// rematcher is one Rematch under way.
type rematcher struct {
	p        *Pipeline
	outdated func(store.ScanRecord) bool
	pace     *pacer
	marker   store.MatchMarker // nil: every re-matched record is rewritten
	marks    []store.MatchMark // not yet written
	// before holds, for each pending new result, the verdicts before it:
	// to announce the images it makes fail.
	before  map[string]map[string]store.DecisionRecord
	n       int // results matched against the new version
	failing []AffectedImage
}

// one matches the stored inventory of d again, if it is still outdated,
// and marks the outcome (or, without marks, writes it at once).
func (rm *rematcher) one(ctx context.Context, d string) error {
	p := rm.p
	if rm.marker == nil {
		return rm.rewrite(ctx, d)
	}
	rec, err := p.o.Store.Scan(ctx, d)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !rm.outdated(rec)) {
		return nil // changed since the listing
	}
	if err != nil {
		return err
	}
	if rec.Inventory == nil {
		p.log.Warn("re-match: stored result has no inventory", "digest", rec.Digest)
		return nil
	}
	findings, dbVersion, err := p.match(ctx, rec.Inventory)
	if err != nil {
		return err
	}
	if dbVersion == "" || rec.Revision == 0 {
		return rm.rewrite(ctx, d)
	}
	mark := store.MatchMark{Digest: d, Revision: rec.Revision, DBVersion: dbVersion}
	warning := p.dbWarning(dbVersion)
	same := warning == rec.DBWarning && sameFindings(rec.Findings, findings)
	if same {
		// A verdict that rests on the database itself (missing, too old)
		// changes with a new one even when the findings do not.
		onDatabase, err := p.judgedOnDatabase(ctx, d)
		if err != nil {
			return err
		}
		same = !onDatabase
	}
	if !same {
		before, err := p.storedVerdicts(ctx, d)
		if err != nil {
			return fmt.Errorf("read verdicts on %s: %w", d, err)
		}
		rm.before[d] = before
		mark.Result = &store.MatchResult{Findings: findings, DBWarning: warning, UpdatedAt: p.now()}
	}
	rm.marks = append(rm.marks, mark)
	return nil
}

// flush writes the pending marks in one commit, then decides again every
// verdict on the images whose findings changed. A mark the store dropped
// (the record was written meanwhile) is matched again and written whole.
func (rm *rematcher) flush(ctx context.Context) error {
	if len(rm.marks) == 0 {
		return nil
	}
	marks, before := rm.marks, rm.before
	rm.marks, rm.before = nil, map[string]map[string]store.DecisionRecord{}
	dropped, err := rm.marker.MarkMatched(ctx, marks)
	if err != nil {
		return err
	}
	redo := map[string]bool{}
	for _, m := range dropped {
		redo[m.Digest] = true
	}
	for _, m := range marks {
		if m.Result == nil && !redo[m.Digest] {
			rm.n++ // done: nothing to decide
		}
	}
	for _, m := range marks {
		switch {
		case redo[m.Digest]:
			if err := rm.rewrite(ctx, m.Digest); err != nil {
				return err
			}
		case m.Result == nil:
		default:
			// Deciding and publishing is most of a changed image's cost:
			// it yields to pulls like matching does.
			started := time.Now()
			if err := rm.decided(ctx, m.Digest, before[m.Digest]); err != nil {
				return err
			}
			if err := rm.pace.yield(ctx, time.Since(started)); err != nil {
				return err
			}
		}
	}
	return nil
}

// keepSame writes, when the re-match stops early (an error, or ctx ended),
// the pending same-findings marks, one cheap commit that spares the next
// re-match their work. The pending new results are dropped, not decided
// on the way out: their records stay outdated, and the next re-match
// matches, writes and decides them.
func (rm *rematcher) keepSame(ctx context.Context) error {
	var same []store.MatchMark
	for _, m := range rm.marks {
		if m.Result == nil {
			same = append(same, m)
		}
	}
	rm.marks, rm.before = nil, map[string]map[string]store.DecisionRecord{}
	if len(same) == 0 {
		return nil
	}
	dropped, err := rm.marker.MarkMatched(context.WithoutCancel(ctx), same)
	if err != nil {
		return err
	}
	rm.n += len(same) - len(dropped) // the dropped ones are matched next time
	return nil
}

// decided decides again every verdict on d, whose result changed, and
// collects the verdicts that turned to block.
func (rm *rematcher) decided(ctx context.Context, d string, before map[string]store.DecisionRecord) error {
	p := rm.p
	p.forget(digest.Digest(d))
	if err := p.decideAll(ctx, d, job{}); err != nil {
		return err
	}
	rm.n++
	if after, err := p.storedVerdicts(ctx, d); err == nil {
		rm.failing = append(rm.failing, newlyFailing(before, after)...)
	} else {
		p.log.Warn("read verdicts after re-match", "digest", d, "err", err)
	}
	return nil
}

// rewrite matches the stored inventory of d again and writes the result
// into the record itself (read again and redone if another writer comes
// first), then decides again every verdict on it: for stores without
// match marks, and for records written while their mark was pending.
func (rm *rematcher) rewrite(ctx context.Context, d string) error {
	p := rm.p
	before, err := p.storedVerdicts(ctx, d)
	if err != nil {
		return fmt.Errorf("read verdicts on %s: %w", d, err)
	}
	written, err := store.UpdateScan(ctx, p.o.Store, d, func(r *store.ScanRecord, exists bool) (bool, error) {
		if !exists || !rm.outdated(*r) {
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
	if err != nil || written == nil {
		return err
	}
	return rm.decided(ctx, d, before)
}

// sameFindings reports whether a new match found what is stored, as the
// store keeps it (its JSON: nil and empty lists inside findings are one).
func sameFindings(stored, found []vulndb.Finding) bool {
	if stored == nil {
		return false // not matched yet: [] is written
	}
	a, errA := json.Marshal(stored)
	b, errB := json.Marshal(found)
	return errA == nil && errB == nil && bytes.Equal(a, b)
}

// judgedOnDatabase reports whether a verdict on d depends on the database
// itself rather than its findings (missing or too old when decided): a new
// database changes such a verdict even when the findings stay the same.
// A digest with a verdict not made yet counts too: deciding it is due.
func (p *Pipeline) judgedOnDatabase(ctx context.Context, d string) (bool, error) {
	found := false
	err := p.o.Store.Decisions(ctx, d, func(r store.DecisionRecord) bool {
		if r.Decision == nil {
			found = true
			return false
		}
		for _, reason := range r.Decision.Reasons {
			if reason.Data["source"] == "database" {
				found = true
				return false
			}
		}
		return true
	})
	if err != nil {
		return false, fmt.Errorf("read verdicts on %s: %w", d, err)
	}
	return found, nil
}

// digestsWhere lists the digests of the stored records keep selects.
// Digests only: memory stays flat however many images are stored, and
// each record is read again when its turn comes.
func (p *Pipeline) digestsWhere(ctx context.Context, keep func(store.ScanRecord) bool) ([]string, error) {
	var out []string
	// Without inventories: the listing reads every stored record, at the
	// start of every re-match, beside the pull path.
	err := store.ScansWithoutInventory(ctx, p.o.Store, func(r store.ScanRecord) bool {
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
