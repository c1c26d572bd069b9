package pipeline

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/store"
)

// Check implements proxy.Gate: the verdict, under the rule of the
// repository the client names, on the digest it is about to get. With no
// result yet it queues the scan and waits as that rule's on_unscanned says,
// then applies its "then" verdict. Verdicts are bound to digests and
// repositories: a tag that moves gets the new digest's verdict, and a copy
// of an image in a laxer repository does not open it in a stricter one.
func (p *Pipeline) Check(ctx context.Context, s proxy.Subject) (proxy.Decision, error) {
	d, err := p.check(ctx, s)
	if err == nil || ctx.Err() != nil {
		return d, err
	}
	// The state store (Redis) cannot be reached: the verdict this process
	// served last for the subject, else the rule's on_error.
	if last, ok := p.lastServed(s); ok {
		p.log.Warn("state store unavailable; serving the last verdict", "image", s.Upstream+"/"+s.Repository+"@"+s.Digest.String(), "err", err)
		return p.withControls(ctx, s, last), nil
	}
	p.log.Warn("state store unavailable; on_error decides", "image", s.Upstream+"/"+s.Repository+"@"+s.Digest.String(), "err", err)
	rule := p.policy().Select(s.Upstream, s.Repository)
	return p.gateOf(ctx, s.Upstream, s.Repository, s.Digest.String(), unavailableDecision(rule, s.Upstream, s.Repository, s.Digest.String(), err, p.now())), nil
}

// unavailableDecision is what rule gives an image when what it needs
// cannot be read: its on_error verdict for each check it has.
func unavailableDecision(rule policy.Rule, upstream, repo, dgst string, cause error, now time.Time) policy.Decision {
	msg := "state store unavailable: " + cause.Error()
	return policy.Evaluate(rule, policy.Facts{
		Upstream: upstream, Repository: repo, Digest: dgst, Reference: dgst,
		ScanState: policy.ScanFailed, ScanError: msg,
		Signature: policy.SignatureFacts{State: policy.SignatureError, Error: msg},
		Now:       now,
	})
}

func (p *Pipeline) check(ctx context.Context, s proxy.Subject) (proxy.Decision, error) {
	if isIndex(s.MediaType) {
		// The gate applies to the platform manifest a client pulls next;
		// a signature on the index covers it. Only the operators' controls
		// judge the index itself: a quarantined index is refused.
		if err := p.linkIndex(ctx, s); err != nil {
			return refusal(s, err)
		}
		if err := p.Enqueue(ctx, s.Upstream, s.Repository, s.Digest, s.MediaType); err != nil {
			p.log.Warn("queue scans of index", "digest", s.Digest, "err", err)
		}
		return p.gateOf(ctx, s.Upstream, s.Repository, s.Digest.String(), policy.Decision{Verdict: policy.Allow, Effective: policy.Allow}), nil
	}
	// The blob gate must know the image's blobs in this repository before
	// the client can learn their digests from the manifest.
	if err := p.linkImage(ctx, s); err != nil {
		return refusal(s, err)
	}
	pol := p.policy()
	rule := pol.Select(s.Upstream, s.Repository)
	if c, ok := p.remembered(s, pol.Version(), rule); ok {
		return p.withControls(ctx, s, c), nil
	}
	// A quarantined image is refused whatever its scan would find: at
	// once, with nothing queued or waited for.
	if r := p.overlay(ctx, s.Upstream, s.Repository, s.Digest.String(), policy.Decision{}); r.Quarantine != nil {
		return toGate(r.Decision, s.Upstream, s.Repository, s.Digest.String()), nil
	}
	rec, found, err := p.current(ctx, s.Digest)
	if err != nil {
		return proxy.Decision{}, err
	}
	if found && rec.State != store.ScanPending {
		return p.verdictOf(ctx, rec, pol, rule, s)
	}
	err = p.enqueue(ctx, job{upstream: s.Upstream, repo: s.Repository, tag: tagOf(s.Reference), digest: s.Digest}, s.MediaType, p.o.AllPlatforms)
	switch {
	case errors.Is(err, ErrQueueFull):
		// Too much to scan already: the rule's on_unscanned verdict now,
		// and the scan is queued by a later pull.
		p.log.Warn("scan queue full", "image", s.Upstream+"/"+s.Repository+"@"+s.Digest.String())
	case err != nil:
		return proxy.Decision{}, err
	case rule.OnUnscanned.Wait > 0:
		if p.wait(ctx, s.Digest, rule.OnUnscanned.Wait) {
			if rec, found, err = p.current(ctx, s.Digest); err != nil {
				return proxy.Decision{}, err
			}
			if found && rec.State != store.ScanPending {
				return p.verdictOf(ctx, rec, pol, rule, s)
			}
		}
	}
	// Still not scanned: the rule decides what an unscanned image gets.
	return p.gateOf(ctx, s.Upstream, s.Repository, s.Digest.String(), p.unscannedDecision(rule, s.Upstream, s.Repository, s.Digest.String(), tagOf(s.Reference))), nil
}

// unscannedDecision is what rule gives an image whose scan has not ended,
// from what is known without asking any upstream.
func (p *Pipeline) unscannedDecision(rule policy.Rule, upstream, repo, dgst, tag string) policy.Decision {
	pending := store.ScanRecord{Digest: dgst, State: store.ScanPending}
	dec := store.DecisionRecord{Digest: dgst, Upstream: upstream, Repository: repo, Tag: tag}
	return policy.Evaluate(rule, p.factsWith(context.Background(), pending, dec, rule, false))
}

// refusal blocks a manifest whose relations could not be recorded: the
// blob gate would not know its layers.
func refusal(s proxy.Subject, err error) (proxy.Decision, error) {
	var tooLarge *tooManyBlobsError
	if errors.As(err, &tooLarge) {
		return proxy.Decision{Verdict: proxy.Block, Message: "portcullis: blocked " + s.Upstream + "/" + s.Repository + "@" + s.Digest.String() + ": " + err.Error()}, nil
	}
	return proxy.Decision{}, err
}

// current reads the stored record of d, all but its inventory: the gate
// only decides on it.
func (p *Pipeline) current(ctx context.Context, d digest.Digest) (store.ScanRecord, bool, error) {
	rec, err := store.ScanWithoutInventory(ctx, p.o.Store, d.String())
	switch {
	case errors.Is(err, store.ErrNotFound):
		return store.ScanRecord{}, false, nil
	case err != nil:
		return store.ScanRecord{}, false, err
	}
	return rec, true, nil
}

// verdictOf returns the stored verdict on a finished result in the
// subject's repository. When there is none yet, or it was made under
// another policy, on other findings, or for another tag where the rule
// looks at tags, a decision is asked of the background workers and waited
// for as the rule's on_unscanned says; until then the rule's unscanned
// verdict applies. The pull path itself never decides.
func (p *Pipeline) verdictOf(ctx context.Context, rec store.ScanRecord, pol *policy.Policy, rule policy.Rule, s proxy.Subject) (proxy.Decision, error) {
	tag := tagOf(s.Reference)
	var tags []string
	current := func() (policy.Decision, bool, error) {
		dec, err := p.o.Store.Decision(ctx, rec.Digest, s.Upstream, s.Repository)
		if errors.Is(err, store.ErrNotFound) {
			return policy.Decision{}, false, nil
		}
		if err != nil {
			return policy.Decision{}, false, err
		}
		if !decisionCurrent(dec, rec, pol.Version(), rule, tag) || dec.Decision == nil {
			return policy.Decision{}, false, nil
		}
		tags = dec.Tags
		return *dec.Decision, true, nil
	}
	d, ok, err := current()
	if err != nil {
		return proxy.Decision{}, err
	}
	if !ok {
		done, err := p.requestDecision(decisionJob{digest: rec.Digest, upstream: s.Upstream, repo: s.Repository, tag: tag, from: trace.SpanContextFromContext(ctx)})
		if err == nil && awaitDecision(ctx, done, rule.OnUnscanned.Wait) {
			if d, ok, err = current(); err != nil {
				return proxy.Decision{}, err
			}
		}
		if !ok {
			return p.gateOf(ctx, s.Upstream, s.Repository, rec.Digest, p.unscannedDecision(rule, s.Upstream, s.Repository, rec.Digest, tag)), nil
		}
	}
	if tag != "" && !slices.Contains(tags, tag) {
		tags = p.recordTag(ctx, rec.Digest, s.Upstream, s.Repository, tag)
	}
	// The policy's own verdict is remembered; the controls are laid over
	// it on every answer.
	c := p.remember(s, pol.Version(), rule, d, tags)
	return p.withControls(ctx, s, c), nil
}

// recordTag adds tag to the tags the verdict record has seen, and returns
// them. Tags only tell people what a digest is known as: a failed write
// is logged, never a reason to refuse the pull.
func (p *Pipeline) recordTag(ctx context.Context, dgst, upstream, repo, tag string) []string {
	var seen []string
	_, err := store.UpdateDecision(ctx, p.o.Store, dgst, upstream, repo, func(dec *store.DecisionRecord) (bool, error) {
		if dec.Revision == 0 || slices.Contains(dec.Tags, tag) {
			seen = dec.Tags // none to add to, or added meanwhile
			return false, nil
		}
		dec.Tags = store.AddTagSeen(dec.Tags, tag)
		seen = dec.Tags
		return true, nil
	})
	if err != nil {
		p.log.Warn("record the tag an image was pulled by", "image", upstream+"/"+repo+"@"+dgst, "tag", tag, "err", err)
		return nil
	}
	return seen
}

type cachedDecision struct {
	policyVersion string
	tag           string   // the tag it holds for; "" for any
	tags          []string // tags the stored record has seen
	policy        policy.Decision
	decision      proxy.Decision // policy's, as served when no control applies
}

func repoKey(upstream, repo string) string { return upstream + "/" + repo }

// lastServed is the verdict this process last served for s, whatever the
// policy it was made under: the fallback while the state store is away.
func (p *Pipeline) lastServed(s proxy.Subject) (cachedDecision, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.decisions[s.Digest][repoKey(s.Upstream, s.Repository)]
	return c, ok
}

func (p *Pipeline) remembered(s proxy.Subject, policyVersion string, rule policy.Rule) (cachedDecision, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.decisions[s.Digest][repoKey(s.Upstream, s.Repository)]
	tag := tagOf(s.Reference)
	// A tag the record has not seen goes to the store once, to be added.
	return c, ok && c.policyVersion == policyVersion && (rule.Freshness == nil || tag == "" || c.tag == tag) &&
		(tag == "" || slices.Contains(c.tags, tag))
}

func (p *Pipeline) remember(s proxy.Subject, policyVersion string, rule policy.Rule, d policy.Decision, tags []string) cachedDecision {
	g := toGate(d, s.Upstream, s.Repository, s.Digest.String())
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.decisions) >= p.memoLimit {
		p.decisions = map[digest.Digest]map[string]cachedDecision{}
	}
	byRepo := p.decisions[s.Digest]
	if byRepo == nil {
		byRepo = map[string]cachedDecision{}
		p.decisions[s.Digest] = byRepo
	}
	c := cachedDecision{policyVersion: policyVersion, policy: d, decision: g, tags: tags}
	if rule.Freshness != nil {
		c.tag = tagOf(s.Reference)
	}
	byRepo[repoKey(s.Upstream, s.Repository)] = c
	return c
}

// forget drops the remembered verdicts on a digest whose result changed.
func (p *Pipeline) forget(d digest.Digest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.decisions, d)
}

// wait blocks until the scan of d ends, here or on another replica, for
// at most max; it reports whether it ended. It looks at the stored record,
// more rarely as time goes on.
func (p *Pipeline) wait(ctx context.Context, d digest.Digest, max time.Duration) bool {
	deadline := time.Now().Add(max)
	pause := 20 * time.Millisecond
	for {
		rec, found, err := p.current(ctx, d)
		if err == nil && found && rec.State != store.ScanPending {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(min(pause, left)):
		}
		pause = min(2*pause, 250*time.Millisecond)
	}
}
