package controls

import (
	"context"
	"fmt"
	"time"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

const timeLayout = time.RFC3339

// maxParents bounds the indexes read for one digest: an index's
// quarantine or exception covers the children it lists.
const maxParents = 16

// Result is a verdict after the controls: the decision clients get, and
// the control that made it, if one did. The policy's own decision is the
// one given to Resolve; it is never rewritten.
type Result struct {
	Decision   policy.Decision
	Quarantine *store.Quarantine // in force on the digest or an index listing it
	Exception  *store.Exception  // applied: the policy blocked and nothing unwaivable did
}

// Changed reports whether a control changed the policy's decision.
func (r Result) Changed() bool { return r.Quarantine != nil || r.Exception != nil }

// Quarantined returns the quarantine in force on digest.
func (v *View) Quarantined(digest string) (store.Quarantine, bool) {
	now := v.o.Now()
	v.mu.RLock()
	defer v.mu.RUnlock()
	q, ok := v.quarantines[digest]
	if !ok || (!q.Expires.IsZero() && !now.Before(q.Expires)) {
		return store.Quarantine{}, false
	}
	return q, true
}

// Exception returns the exception in force on digest in upstream/repo
// (the first by ID when several are): its repository is a glob over
// upstream/repository, "" for every repository. An exception without an
// expiry is not in force (the API requires one).
func (v *View) Exception(upstream, repo, digest string) (store.Exception, bool) {
	now := v.o.Now()
	name := upstream + "/" + repo
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, e := range v.exceptions[digest] {
		if now.Before(e.Expires) && (e.Repository == "" || policy.MatchRepositoryGlob(e.Repository, name)) {
			return e, true
		}
	}
	return store.Exception{}, false
}

// empty reports whether no control is loaded: the hot path then reads
// nothing more.
func (v *View) empty() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.quarantines) == 0 && len(v.exceptions) == 0
}

// Apply is d, the policy's decision on digest in upstream/repo, after the
// controls.
func (v *View) Apply(ctx context.Context, upstream, repo, digest string, d policy.Decision) policy.Decision {
	return v.Resolve(ctx, upstream, repo, digest, d).Decision
}

// Resolve lays the controls over d, the policy's decision on digest in
// upstream/repo, quarantine > exception > policy:
//   - a quarantine on the digest, or on an index of the repository that
//     lists it, blocks in every mode (audit too);
//   - else, when d blocks and none of its blocking reasons is unwaivable
//     (malware, an invalid signature, curation), an exception on the digest
//     or such an index makes it warn, its reason first;
//   - else d stands.
func (v *View) Resolve(ctx context.Context, upstream, repo, digest string, d policy.Decision) Result {
	if v.empty() {
		return Result{Decision: d}
	}
	return v.resolve(upstream, repo, digest, append([]string{digest}, v.parents(ctx, upstream, repo, digest)...), d)
}

// ResolveDirect is Resolve with the digest's own controls only, not those
// of the indexes listing it: what a walk over many verdicts shows, since
// it reads nothing from the store (a bbolt walk must not open another
// transaction) and costs no lookup per verdict.
func (v *View) ResolveDirect(upstream, repo, digest string, d policy.Decision) Result {
	if v.empty() {
		return Result{Decision: d}
	}
	return v.resolve(upstream, repo, digest, []string{digest}, d)
}

// resolve lays the controls of subjects (the digest, then the indexes
// listing it) over d.
func (v *View) resolve(upstream, repo, digest string, subjects []string, d policy.Decision) Result {
	for _, s := range subjects {
		if q, ok := v.Quarantined(s); ok {
			return Result{Decision: quarantined(d, digest, q), Quarantine: &q}
		}
	}
	if d.Effective != policy.Block || len(d.Unwaivable()) > 0 {
		return Result{Decision: d}
	}
	for _, s := range subjects {
		if e, ok := v.Exception(upstream, repo, s); ok {
			return Result{Decision: excepted(d, digest, e), Exception: &e}
		}
	}
	return Result{Decision: d}
}

// quarantined blocks d in every mode, the quarantine's reason first.
func quarantined(d policy.Decision, digest string, q store.Quarantine) policy.Decision {
	msg := digest + " is quarantined"
	if q.Digest != digest {
		msg += " with its index " + q.Digest
	}
	msg += ": " + q.Reason + " (by " + q.CreatedBy
	if !q.Expires.IsZero() {
		msg += ", until " + q.Expires.UTC().Format(timeLayout)
	}
	msg += ")"
	data := map[string]any{"digest": q.Digest, "reason": q.Reason, "createdBy": q.CreatedBy}
	if !q.Expires.IsZero() {
		data["expires"] = q.Expires.UTC().Format(timeLayout)
	}
	out := d
	out.Verdict, out.Effective = policy.Block, policy.Block
	out.Reasons = append([]policy.Reason{{Code: policy.CodeQuarantined, Verdict: policy.Block, Message: msg, Data: data}}, d.Reasons...)
	return out
}

// excepted lets d through as warn, the exception's reason first; the
// policy's reasons stay, so the warning says what was waived.
func excepted(d policy.Decision, digest string, e store.Exception) policy.Decision {
	msg := fmt.Sprintf("exception %s lets %s through: %s (by %s, until %s)", e.ID, digest, e.Reason, e.CreatedBy, e.Expires.UTC().Format(timeLayout))
	data := map[string]any{"id": e.ID, "digest": e.Digest, "reason": e.Reason, "expires": e.Expires.UTC().Format(timeLayout)}
	if e.Repository != "" {
		data["repository"] = e.Repository
	}
	out := d
	out.Verdict, out.Effective = policy.Warn, policy.Warn
	out.Reasons = append([]policy.Reason{{Code: policy.CodeException, Verdict: policy.Warn, Message: msg, Data: data}}, d.Reasons...)
	return out
}
