package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

// RuleOutcome is what one rule of the policy in force would decide about
// an image.
type RuleOutcome struct {
	Rule policy.Rule
	// Selected marks the rule the gate applies in the repository asked
	// about; the others are what-ifs.
	Selected bool
	Decision policy.Decision
}

// WhatIf evaluates every rule of the policy in force against the stored
// facts of digest pulled through upstream/repo, and stores nothing. It never
// reaches an upstream: the signature check is the one last stored for that
// repository (it was made against the selected rule's keys, so only that
// rule sees it; the others see "not checked"), and freshness sees no
// upstream tags. No scan record: store.ErrNotFound.
func (p *Pipeline) WhatIf(ctx context.Context, upstream, repo, digest string) ([]RuleOutcome, error) {
	rec, err := p.o.Store.Scan(ctx, digest)
	if err != nil {
		return nil, fmt.Errorf("read scan %s: %w", digest, err)
	}
	dec, err := p.o.Store.Decision(ctx, digest, upstream, repo)
	switch {
	case errors.Is(err, store.ErrNotFound):
		dec = store.DecisionRecord{Digest: digest, Upstream: upstream, Repository: repo}
	case err != nil:
		return nil, fmt.Errorf("read verdict on %s in %s/%s: %w", digest, upstream, repo, err)
	}
	pol := p.policy()
	selected := pol.Select(upstream, repo)
	rules := slices.Clone(pol.Rules)
	found := false
	out := make([]RuleOutcome, 0, len(rules)+1)
	for _, rule := range rules {
		rule.PolicyVersion = selected.PolicyVersion
		isSelected := !found && sameRule(rule, selected)
		found = found || isSelected
		out = append(out, p.outcome(ctx, rec, dec, rule, isSelected))
	}
	if !found { // no rule matches: the built-in "unmatched" one applies
		out = append(out, p.outcome(ctx, rec, dec, selected, true))
	}
	return out, nil
}

func (p *Pipeline) outcome(ctx context.Context, rec store.ScanRecord, dec store.DecisionRecord, rule policy.Rule, selected bool) RuleOutcome {
	facts := p.factsWith(ctx, rec, dec, rule, false)
	if selected && dec.Signature != nil {
		facts.Signature = *dec.Signature
	}
	return RuleOutcome{Rule: rule, Selected: selected, Decision: policy.Evaluate(rule, facts)}
}

func sameRule(a, b policy.Rule) bool {
	return a.Name == b.Name && slices.Equal(a.Match.Upstreams, b.Match.Upstreams) && slices.Equal(a.Match.Repositories, b.Match.Repositories)
}

// PolicyLoadedAt is when the policy in force was put in force (at start,
// or by the last SetPolicy).
func (p *Pipeline) PolicyLoadedAt() time.Time {
	return time.Unix(0, p.policyLoadedAt.Load())
}
