package api

import (
	"context"
	"strings"

	"github.com/portcullis/portcullis/controls"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

// Controls are the operators' quarantines and exceptions as this replica
// applies them (controls.View): every verdict the API shows is the one
// the gate serves, with the policy's own beside it.
type Controls interface {
	// Resolve lays the controls over d, the policy's decision on digest
	// in upstream/repo.
	Resolve(ctx context.Context, upstream, repo, digest string, d policy.Decision) controls.Result
	// ResolveDirect is Resolve with the digest's own controls only (no
	// store read): for lists and counts over many verdicts.
	ResolveDirect(upstream, repo, digest string, d policy.Decision) controls.Result
	// Refresh reloads the controls from the store now, so a change made
	// through this replica applies here at once.
	Refresh(ctx context.Context) error
}

// resolve is the controls over d (nil: no verdict yet, which only a
// quarantine changes); ok is false when none applies.
func (h *Handler) resolve(ctx context.Context, upstream, repo, digest string, d *policy.Decision) (controls.Result, bool) {
	if h.Controls == nil {
		return controls.Result{}, false
	}
	var own policy.Decision
	if d != nil {
		own = *d
	}
	r := h.Controls.Resolve(ctx, upstream, repo, digest, own)
	return r, r.Changed()
}

// overlayScanView shows the top-level verdict of v after the controls,
// the policy's own in PolicyVerdict; the per-repository decisions stay the
// policy's.
func (h *Handler) overlayScanView(ctx context.Context, v *scanView, where string) {
	upstream, repo, ok := strings.Cut(where, "/")
	if !ok {
		return
	}
	r, changed := h.resolve(ctx, upstream, repo, v.Digest, v.Decision)
	if !changed {
		return
	}
	v.PolicyVerdict = v.Verdict
	if v.PolicyVerdict == "" {
		v.PolicyVerdict = verdictUnknown
	}
	v.VerdictIn, v.Verdict, v.Decision = where, string(r.Decision.Effective), &r.Decision
	v.Quarantine, v.Exception = r.Quarantine, r.Exception
}

// overlayStatus shows st's verdict after the controls, the policy's own
// (or pending, unknown) in PolicyVerdict, the control's reason first.
func (h *Handler) overlayStatus(ctx context.Context, st *imageStatus, own *policy.Decision) {
	r, changed := h.resolve(ctx, st.Upstream, st.Repository, st.Digest, own)
	if !changed {
		return
	}
	first := r.Decision.Reasons[0]
	st.PolicyVerdict, st.Verdict = st.Verdict, string(r.Decision.Effective)
	st.Reasons = append([]reasonView{{Code: first.Code, Verdict: string(first.Verdict), Message: first.Message}}, st.Reasons...)
	st.Quarantine, st.Exception = r.Quarantine, r.Exception
}

// listedVerdict is the verdict lists and counts show and filter on: the
// policy's (pending while unscanned), after the digest's own quarantine
// or exception; control names the one that changed it ("quarantine",
// "exception"). Those of an index listing the digest show on the image's
// own views, which read them.
func (h *Handler) listedVerdict(d store.DecisionRecord) (verdict, control string) {
	verdict = effectiveVerdict(d)
	if h.Controls == nil {
		return verdict, ""
	}
	var own policy.Decision
	if d.Decision != nil {
		own = *d.Decision
	}
	r := h.Controls.ResolveDirect(d.Upstream, d.Repository, d.Digest, own)
	switch {
	case r.Quarantine != nil:
		return string(r.Decision.Effective), "quarantine"
	case r.Exception != nil:
		return string(r.Decision.Effective), "exception"
	}
	return verdict, ""
}
