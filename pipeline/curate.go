package pipeline

import (
	"context"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
)

// Curate implements proxy.Curation with the policy in force, so a reload
// applies to the next request. Only an enforced refusal refuses. Under
// warn, the pull is served with the usual warning: a refused source's is
// in the verdict (Evaluate reports it), a tag refusal's is the warning
// returned here. Under audit a refused source is recorded in the verdict
// and a tag refusal in the log.
func (p *Pipeline) Curate(ctx context.Context, upstream, repo, reference string) *proxy.Refusal {
	d, refused := p.policy().Curate(upstream, repo, reference)
	if !refused {
		return nil
	}
	reason := d.Reasons[0]
	image := upstream + "/" + repo
	msg := "portcullis: " + image + ": " + reason.Message
	if reason.Code == policy.CodeSourceBlocked {
		msg = "portcullis: " + image + " is " + reason.Message
	}
	refusal := &proxy.Refusal{Rule: d.Rule, Code: reason.Code, Message: msg}
	switch {
	case d.Effective == policy.Block:
		return refusal
	case d.Effective == policy.Warn && reason.Code != policy.CodeSourceBlocked:
		// The verdict carries a refused source's warning already.
		refusal.Warn, refusal.Message = true, reason.Message
		return refusal
	case reason.Code != policy.CodeSourceBlocked:
		p.log.InfoContext(ctx, "curation would refuse; served as the rule's mode is audit", "image", image, "reference", reference,
			"rule", d.Rule, "code", reason.Code, "reason", reason.Message)
	}
	return nil
}
