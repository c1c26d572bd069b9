package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

// SetPolicy puts pol in force for every later decision. Stored verdicts
// made under another policy are re-made on their next pull, or all at once
// by Reevaluate.
func (p *Pipeline) SetPolicy(pol *policy.Policy) {
	p.pol.Store(pol)
	p.policyLoadedAt.Store(p.now().UnixNano())
}

// Policy returns the policy in force.
func (p *Pipeline) Policy() *policy.Policy { return p.policy() }

// Reevaluate decides again, from stored facts and without reading any
// layer, every verdict made under another policy than the one in force, in
// the repository it was made for, so verdict changes are recorded,
// announced and published when the policy changes, not when the image is
// next pulled. It returns how many verdicts it re-decided.
func (p *Pipeline) Reevaluate(ctx context.Context) (int, error) {
	type target struct{ digest, upstream, repo string }
	var targets []target
	err := p.o.Store.Decisions(ctx, "", func(r store.DecisionRecord) bool {
		if r.PolicyVersion != p.policy().Version() {
			targets = append(targets, target{r.Digest, r.Upstream, r.Repository})
		}
		return true
	})
	if err != nil {
		return 0, fmt.Errorf("list verdicts: %w", err)
	}
	n := 0
	// A new policy re-decides every stored verdict, as a database update
	// re-matches every result: the same bulk work beside the pull path,
	// which yields to pulls in flight the same way (pace.go).
	pace := p.pace
	for _, t := range targets {
		started := time.Now()
		changed, err := p.reevaluateOne(ctx, t.digest, t.upstream, t.repo)
		if err != nil {
			return n, err
		}
		if changed {
			n++
		}
		if err := pace.yield(ctx, time.Since(started)); err != nil {
			return n, err
		}
	}
	return n, nil
}

// reevaluateOne decides again the verdict on digest in upstream/repo if it
// was made under another policy, and reports whether it wrote it.
func (p *Pipeline) reevaluateOne(ctx context.Context, digest, upstream, repo string) (bool, error) {
	rec, err := store.ScanWithoutInventory(ctx, p.o.Store, digest)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if rec.State == store.ScanPending {
		return false, nil // decided when its scan ends
	}
	// Checked again per verdict: a pull may have re-decided it meanwhile,
	// or a newer policy come into force.
	var d policy.Decision
	var change *store.VerdictChange
	written, err := store.UpdateDecision(ctx, p.o.Store, digest, upstream, repo, func(r *store.DecisionRecord) (bool, error) {
		if r.PolicyVersion == p.policy().Version() {
			return false, nil
		}
		d, change = p.decideForWrite(ctx, rec, r)
		return true, nil
	})
	if err != nil || written == nil {
		return false, err
	}
	p.decided(ctx, rec, *written, d, change)
	return true, nil
}
