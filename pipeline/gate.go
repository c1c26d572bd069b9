package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/store"
)

// Check implements proxy.Gate: the verdict for the digest the client is
// about to get. With no result yet it queues the scan and waits as the
// policy's on_unscanned says, then applies its "then" verdict. Verdicts are
// bound to digests: a tag that moves gets the new digest's verdict.
func (p *Pipeline) Check(ctx context.Context, s proxy.Subject) (proxy.Decision, error) {
	if isIndex(s.MediaType) {
		// The gate applies to the platform manifest a client pulls next;
		// a signature on the index covers it.
		p.noteChildren(ctx, s)
		if err := p.Enqueue(ctx, s.Upstream, s.Repository, s.Digest, s.MediaType); err != nil {
			p.log.Warn("queue scans of index", "digest", s.Digest, "err", err)
		}
		return proxy.Decision{Verdict: proxy.Allow}, nil
	}
	p.noteTag(s.Digest, s.Reference)
	pol := p.policy()
	if d, ok := p.remembered(s.Digest, pol.Version()); ok {
		return d, nil
	}
	rec, found, err := p.current(ctx, s.Digest)
	if err != nil {
		return proxy.Decision{}, err
	}
	if found && rec.State != store.ScanPending {
		return p.verdictOf(ctx, rec, pol, s)
	}
	if err := p.Enqueue(ctx, s.Upstream, s.Repository, s.Digest, s.MediaType); err != nil {
		return proxy.Decision{}, err
	}
	rule := pol.Select(s.Upstream, s.Repository)
	if rule.OnUnscanned.Wait > 0 {
		if p.wait(ctx, s.Digest, rule.OnUnscanned.Wait) {
			if rec, found, err = p.current(ctx, s.Digest); err != nil {
				return proxy.Decision{}, err
			}
			if found && rec.State != store.ScanPending {
				return p.verdictOf(ctx, rec, pol, s)
			}
		}
	}
	// Still not scanned: the policy decides what an unscanned image gets.
	now := p.now()
	pending := store.ScanRecord{Digest: s.Digest.String(), State: store.ScanPending, Upstream: s.Upstream, Repository: s.Repository, QueuedAt: now}
	return toGate(policy.Evaluate(rule, p.factsWith(ctx, pending, rule, s.Reference, false)), pending), nil
}

// current reads the stored record of d.
func (p *Pipeline) current(ctx context.Context, d digest.Digest) (store.ScanRecord, bool, error) {
	rec, err := p.o.Store.Scan(ctx, d.String())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.ScanRecord{}, false, nil
	case err != nil:
		return store.ScanRecord{}, false, err
	}
	return rec, true, nil
}

// verdictOf returns the stored decision, re-evaluating (without any
// download) when the policy changed since it was made.
func (p *Pipeline) verdictOf(ctx context.Context, rec store.ScanRecord, pol *policy.Policy, s proxy.Subject) (proxy.Decision, error) {
	var d policy.Decision
	if rec.PolicyVersion != pol.Version() || len(rec.Decision) == 0 || json.Unmarshal(rec.Decision, &d) != nil {
		var change *store.VerdictChange
		d, change = p.decide(ctx, &rec, s.Reference)
		switch err := p.o.Store.PutScan(ctx, &rec); {
		case err == nil:
			p.announce(ctx, rec, d, change)
			p.noteBlobs(rec)
		case errors.Is(err, store.ErrConflict):
			// Changed meanwhile (a re-match, a re-evaluation): that writer's
			// record stands; this pull is served what was decided here.
		default:
			p.log.Error("store decision", "digest", rec.Digest, "err", err)
		}
	}
	g := toGate(d, rec)
	p.remember(s.Digest, pol.Version(), g)
	return g, nil
}

type cachedDecision struct {
	policyVersion string
	decision      proxy.Decision
}

func (p *Pipeline) remembered(d digest.Digest, policyVersion string) (proxy.Decision, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.decisions[d]
	return c.decision, ok && c.policyVersion == policyVersion
}

func (p *Pipeline) remember(d digest.Digest, policyVersion string, g proxy.Decision) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.decisions) >= settledLimit {
		p.decisions = map[digest.Digest]cachedDecision{}
	}
	p.decisions[d] = cachedDecision{policyVersion: policyVersion, decision: g}
}

// forget drops a remembered verdict whose result changed.
func (p *Pipeline) forget(d digest.Digest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.decisions, d)
}

// wait blocks until the queued scan of d ends, for at most max; it reports
// whether it ended.
func (p *Pipeline) wait(ctx context.Context, d digest.Digest, max time.Duration) bool {
	p.mu.Lock()
	ch := p.finished[d]
	p.mu.Unlock()
	if ch == nil {
		// Queued by another process: look again shortly, until max.
		return false
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}
