package pipeline

import (
	"context"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

// SetPolicy puts pol in force for every later decision. Stored verdicts
// made under another policy are re-made on their next pull, or all at once
// by Reevaluate.
func (p *Pipeline) SetPolicy(pol *policy.Policy) {
	p.pol.Store(pol)
}

// Policy returns the policy in force.
func (p *Pipeline) Policy() *policy.Policy { return p.policy() }

// Reevaluate decides again, from stored facts and without reading any
// layer, every scanned (or failed) image whose verdict was made under
// another policy than the one in force, so verdict changes are recorded,
// announced and published when the policy changes, not when the image is
// next pulled. It returns how many records it re-decided.
func (p *Pipeline) Reevaluate(ctx context.Context) (int, error) {
	// Checked again per record: a pull may have re-decided it meanwhile,
	// or a newer policy come into force.
	outdated := func(r store.ScanRecord) bool {
		return r.State != store.ScanPending && r.PolicyVersion != p.policy().Version()
	}
	return p.redecideWhere(ctx, outdated, nil, func(r *store.ScanRecord) string { return r.Tag })
}
