package pipeline

import (
	"context"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
)

// Curate implements proxy.Curation with the policy in force, so a reload
// applies to the next request. Only an enforced refusal refuses: under
// warn a refused source is served with the usual warning (Evaluate
// reports it), under audit it is only recorded; a tag refusal those modes
// let through is logged here, since no verdict carries it.
func (p *Pipeline) Curate(ctx context.Context, upstream, repo, reference string) *proxy.Refusal {
	d, refused := p.policy().Curate(upstream, repo, reference)
	if !refused {
		return nil
	}
	reason := d.Reasons[0]
	image := upstream + "/" + repo
	if d.Effective != policy.Block {
		if reason.Code != policy.CodeSourceBlocked {
			p.log.InfoContext(ctx, "curation would refuse; served under the rule's mode", "image", image, "reference", reference,
				"rule", d.Rule, "mode", d.Mode, "code", reason.Code, "reason", reason.Message)
		}
		return nil
	}
	msg := "portcullis: " + image + ": " + reason.Message
	if reason.Code == policy.CodeSourceBlocked {
		msg = "portcullis: " + image + " is " + reason.Message
	}
	return &proxy.Refusal{Rule: d.Rule, Code: reason.Code, Message: msg}
}
