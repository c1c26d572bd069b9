package pipeline

import (
	"context"

	"github.com/portcullis/portcullis/controls"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/store"
)

// Controls lays the operators' quarantines and exceptions over the
// policy's verdicts (controls.View): every answer of the gates goes
// through it, remembered ones too, while the stored decisions stay the
// policy's own, so lifting a control restores them with no new scan.
type Controls interface {
	Resolve(ctx context.Context, upstream, repo, digest string, d policy.Decision) controls.Result
	Quarantined(digest string) (store.Quarantine, bool)
	// Version moves with every change of the controls; memos of answers
	// are keyed on it.
	Version() uint64
	// IndexLinked tells that an index listing children was just linked
	// in upstream/repo, so its controls cover them from the next pull.
	IndexLinked(upstream, repo string, children []string)
}

// overlay is d, the policy's decision on dgst in upstream/repo, after the
// controls.
func (p *Pipeline) overlay(ctx context.Context, upstream, repo, dgst string, d policy.Decision) controls.Result {
	if p.o.Controls == nil {
		return controls.Result{Decision: d}
	}
	return p.o.Controls.Resolve(ctx, upstream, repo, dgst, d)
}

// gateOf is what the proxy serves for d after the controls.
func (p *Pipeline) gateOf(ctx context.Context, upstream, repo, dgst string, d policy.Decision) proxy.Decision {
	return toGate(p.overlay(ctx, upstream, repo, dgst, d).Decision, upstream, repo, dgst)
}

// withControls is a remembered answer after the controls in force now: a
// quarantine added since it was remembered applies at once.
func (p *Pipeline) withControls(ctx context.Context, s proxy.Subject, c cachedDecision) proxy.Decision {
	r := p.overlay(ctx, s.Upstream, s.Repository, s.Digest.String(), c.policy)
	if !r.Changed() {
		return c.decision
	}
	return toGate(r.Decision, s.Upstream, s.Repository, s.Digest.String())
}

// controlsVersion keys the memo of blob answers: none outlives a change
// of the controls.
func (p *Pipeline) controlsVersion() uint64 {
	if p.o.Controls == nil {
		return 0
	}
	return p.o.Controls.Version()
}

// QuarantineGate is the gate of a mirror that does not scan: no policy
// judges its images, but an operator's quarantine still refuses a
// quarantined manifest. Its layers, and the children of a quarantined
// index, are known only through the relations the scanning gate records,
// and are served.
func QuarantineGate(c Controls) proxy.Gate { return quarantineGate{c} }

type quarantineGate struct{ c Controls }

func (g quarantineGate) Check(ctx context.Context, s proxy.Subject) (proxy.Decision, error) {
	allowed := policy.Decision{Verdict: policy.Allow, Effective: policy.Allow}
	d := toGate(g.c.Resolve(ctx, s.Upstream, s.Repository, s.Digest.String(), allowed).Decision, s.Upstream, s.Repository, s.Digest.String())
	d.Details = "" // no scan record to link
	return d, nil
}
