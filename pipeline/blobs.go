package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/store"
)

// CheckBlob implements proxy.BlobGate: in the repository the request
// names, a blob is served when an image of that repository that references
// it may be served there, and refused when every such image is blocked
// there, so a blocked image cannot be pulled layer by layer, and a copy of
// it in another repository opens nothing here. Blobs no image of the
// repository references are served (with auth, the proxy serves only blobs
// linked to the repository).
func (p *Pipeline) CheckBlob(ctx context.Context, upstream, repo string, d digest.Digest) (proxy.Decision, error) {
	key := blobKey{upstream: upstream, repo: repo, digest: d, controls: p.controlsVersion()}
	dec, err := p.checkBlob(ctx, upstream, repo, d)
	if err == nil {
		p.rememberBlob(key, dec)
		return dec, nil
	}
	if ctx.Err() != nil {
		return proxy.Decision{}, err
	}
	// The state store (Redis) cannot be reached: the answer this process
	// gave last, else the rule's on_error.
	if last, ok := p.lastBlob(key); ok {
		return last, nil
	}
	p.log.Warn("state store unavailable; on_error decides the blob", "blob", key.String(), "err", err)
	rule := p.policy().Select(upstream, repo)
	if unavailableDecision(rule, upstream, repo, d.String(), err, p.now()).Effective == policy.Block {
		return proxy.Decision{Verdict: proxy.Block, Message: fmt.Sprintf("portcullis: blob %s in %s/%s cannot be checked now (state store unavailable)", d, upstream, repo)}, nil
	}
	return proxy.Decision{Verdict: proxy.Allow}, nil
}

// blobKey names a blob in a repository in the memo of answers: a struct,
// not a joined string, so the warm blob path allocates nothing for it.
type blobKey struct {
	upstream, repo string
	digest         digest.Digest
	// controls is the controls' version the answer was given under: no
	// answer outlives a quarantine or an exception added or lifted.
	controls uint64
}

func (k blobKey) String() string { return k.upstream + "/" + k.repo + "@" + k.digest.String() }

// rememberBlob records d as the last answer for key. The same answer as
// last time (every warm GET of an allowed blob) writes nothing.
func (p *Pipeline) rememberBlob(key blobKey, d proxy.Decision) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if last, ok := p.blobAnswers[key]; ok && last == d {
		return
	}
	if len(p.blobAnswers) >= p.memoLimit {
		p.blobAnswers = map[blobKey]proxy.Decision{}
	}
	p.blobAnswers[key] = d
}

func (p *Pipeline) lastBlob(key blobKey) (proxy.Decision, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.blobAnswers[key]
	return d, ok
}

func (p *Pipeline) checkBlob(ctx context.Context, upstream, repo string, d digest.Digest) (proxy.Decision, error) {
	allowed := false
	var blocked []string // the first image blocked here, then undecided ones the rule blocks
	var undecided []string
	var excepted []string // blocked images an exception may open
	overlaid := 0         // images whose controls were read
	err := p.o.Store.BlobImages(ctx, upstream, repo, d.String(), func(image, verdict string) bool {
		switch verdict {
		case string(policy.Allow), string(policy.Warn):
			if p.quarantinedHere(ctx, upstream, repo, image, &overlaid) {
				if len(blocked) == 0 {
					blocked = append(blocked, image)
				}
				return true
			}
			allowed = true
			return false
		case string(policy.Block):
			if len(blocked) == 0 {
				blocked = append(blocked, image)
			}
			if p.o.Controls != nil && len(excepted) < maxUndecidedChecked {
				excepted = append(excepted, image)
			}
		default:
			if len(undecided) < maxUndecidedChecked {
				undecided = append(undecided, image)
			}
		}
		return true // an allowed image may come later
	})
	if err != nil {
		return proxy.Decision{}, fmt.Errorf("images with blob %s in %s/%s: %w", d, upstream, repo, err)
	}
	if allowed {
		return proxy.Decision{Verdict: proxy.Allow}, nil
	}
	// An exception opens a blocked image's blobs as it opens its
	// manifest: with the policy's whole decision, so nothing unwaivable is
	// waived.
	for _, image := range excepted {
		open, err := p.exceptedHere(ctx, upstream, repo, image)
		if err != nil {
			return proxy.Decision{}, err
		}
		if open {
			return proxy.Decision{Verdict: proxy.Allow}, nil
		}
	}
	// An image with no verdict here yet is still being scanned (its
	// manifest was served under on_unscanned), or its verdict is being
	// decided: the blob gets the rule's unscanned verdict, as its manifest
	// did, and the decision is asked for (not made: this is the blob path).
	rule := p.policy().Select(upstream, repo)
	for _, image := range undecided {
		if _, err := p.requestDecision(decisionJob{digest: image, upstream: upstream, repo: repo}); err != nil {
			p.log.Warn("ask for a verdict", "image", upstream+"/"+repo+"@"+image, "err", err)
		}
		if p.overlay(ctx, upstream, repo, image, p.unscannedDecision(rule, upstream, repo, image, "")).Decision.Effective != policy.Block {
			return proxy.Decision{Verdict: proxy.Allow}, nil
		}
		blocked = append(blocked, image)
	}
	if len(blocked) == 0 {
		return proxy.Decision{Verdict: proxy.Allow}, nil
	}
	image := blocked[0]
	return proxy.Decision{Verdict: proxy.Block, Details: "/api/v1/scans/" + image,
		Message: fmt.Sprintf("portcullis: blob %s belongs to blocked image %s in %s/%s", d, image, upstream, repo)}, nil
}

// maxOverlaid bounds the images of one blob request whose indexes are
// read for their quarantines; past it, only their own quarantines count.
const maxOverlaid = 64

// quarantinedHere reports whether a quarantine blocks image in
// upstream/repo (its own, or one of an index listing it). *overlaid counts
// the store reads it made.
func (p *Pipeline) quarantinedHere(ctx context.Context, upstream, repo, image string, overlaid *int) bool {
	if p.o.Controls == nil {
		return false
	}
	if *overlaid >= maxOverlaid {
		_, ok := p.o.Controls.Quarantined(image)
		return ok
	}
	*overlaid++
	return p.o.Controls.Resolve(ctx, upstream, repo, image, policy.Decision{Verdict: policy.Allow, Effective: policy.Allow}).Quarantine != nil
}

// exceptedHere reports whether an exception lets image, blocked by the
// policy in upstream/repo, through there.
func (p *Pipeline) exceptedHere(ctx context.Context, upstream, repo, image string) (bool, error) {
	// Without one on the image or its indexes, no need to read its
	// decision.
	probe := policy.Decision{Verdict: policy.Block, Effective: policy.Block}
	if p.o.Controls.Resolve(ctx, upstream, repo, image, probe).Exception == nil {
		return false, nil
	}
	dec, err := p.o.Store.Decision(ctx, image, upstream, repo)
	if errors.Is(err, store.ErrNotFound) || (err == nil && dec.Decision == nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("verdict on %s in %s/%s: %w", image, upstream, repo, err)
	}
	return p.o.Controls.Resolve(ctx, upstream, repo, image, *dec.Decision).Decision.Effective != policy.Block, nil
}

// maxUndecidedChecked bounds the scan records one blob request reads.
const maxUndecidedChecked = 64
