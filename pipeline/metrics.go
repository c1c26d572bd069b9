package pipeline

import "github.com/portcullis/portcullis/policy"

// blockReason is the code of a block's first blocking reason, for the
// blocked pulls metric.
func blockReason(d policy.Decision) string {
	for _, r := range d.Reasons {
		if r.Verdict == policy.Block {
			return r.Code
		}
	}
	if len(d.Reasons) > 0 {
		return d.Reasons[0].Code
	}
	return ""
}
