package pipeline

import (
	"context"
	"errors"
	"fmt"

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
	for _, t := range targets {
		rec, err := p.o.Store.Scan(ctx, t.digest)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		if rec.State == store.ScanPending {
			continue // decided when its scan ends
		}
		// Checked again per verdict: a pull may have re-decided it
		// meanwhile, or a newer policy come into force.
		var d policy.Decision
		var change *store.VerdictChange
		written, err := store.UpdateDecision(ctx, p.o.Store, t.digest, t.upstream, t.repo, func(r *store.DecisionRecord) (bool, error) {
			if r.PolicyVersion == p.policy().Version() {
				return false, nil
			}
			d, change = p.decideForWrite(ctx, rec, r)
			return true, nil
		})
		if err != nil {
			return n, err
		}
		if written != nil {
			p.decided(ctx, rec, *written, d, change)
			n++
		}
	}
	return n, nil
}
