package pipeline

import (
	"context"
	"errors"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/signing"
	"github.com/portcullis/portcullis/store"
)

// Registry is what signature discovery reads, through the proxy's cache:
// cosign .sig tags, their blobs, and referrers.
type Registry interface {
	Manifest(ctx context.Context, upstream, repo, reference string) ([]byte, string, digest.Digest, error)
	Blob(ctx context.Context, upstream, repo string, d digest.Digest) (io.ReadCloser, error)
	Referrers(ctx context.Context, upstream, repo string, d digest.Digest, artifactType string) ([]byte, error)
}

// upstreamRegistry binds a Registry to one upstream, as signing wants it.
type upstreamRegistry struct {
	reg      Registry
	upstream string
}

func notFound(err error) error {
	if errors.Is(err, proxy.ErrNotFound) {
		return errors.Join(err, signing.ErrNotFound)
	}
	return err
}

func (u upstreamRegistry) Manifest(ctx context.Context, repo, reference string) ([]byte, string, string, error) {
	body, mt, d, err := u.reg.Manifest(ctx, u.upstream, repo, reference)
	return body, mt, d.String(), notFound(err)
}

func (u upstreamRegistry) Blob(ctx context.Context, repo, d string) (io.ReadCloser, error) {
	rc, err := u.reg.Blob(ctx, u.upstream, repo, digest.Digest(d))
	return rc, notFound(err)
}

func (u upstreamRegistry) Referrers(ctx context.Context, repo, d, artifactType string) ([]byte, error) {
	b, err := u.reg.Referrers(ctx, u.upstream, repo, digest.Digest(d), artifactType)
	return b, notFound(err)
}

// signatureFacts verifies the signatures of a record's digest against what
// the rule trusts. Keys and keyless identities are checked separately: the
// transparency-log requirement is about keyless signatures.
func (p *Pipeline) signatureFacts(ctx context.Context, rec store.ScanRecord, rule policy.Rule) policy.SignatureFacts {
	sr := rule.Signature
	if sr == nil || p.o.Registry == nil {
		return policy.SignatureFacts{State: policy.SignatureNotChecked}
	}
	reg := upstreamRegistry{reg: p.o.Registry, upstream: rec.Upstream}
	parent := p.parentOf(digest.Digest(rec.Digest))
	verify := func(t signing.Trust) signing.Result {
		if parent != "" {
			return signing.VerifyWithIndex(ctx, reg, rec.Repository, rec.Digest, parent.String(), t)
		}
		return signing.Verify(ctx, reg, rec.Repository, rec.Digest, t)
	}
	var results []signing.Result
	if len(sr.Keys) > 0 {
		results = append(results, verify(signing.Trust{Keys: sr.Keys, TrustedRoot: sr.TrustedRoot}))
	}
	if len(sr.Identities) > 0 {
		ids := make([]signing.Identity, len(sr.Identities))
		for i, id := range sr.Identities {
			ids[i] = signing.Identity{Issuer: id.Issuer, IssuerRegexp: id.IssuerRegexp, Subject: id.Subject, SubjectRegexp: id.SubjectRegexp}
		}
		results = append(results, verify(signing.Trust{Identities: ids, TrustedRoot: sr.TrustedRoot, RequireTlog: sr.RequireTlog}))
	}
	// Any verification wins; else an error (we could not tell) beats
	// invalid, which beats unsigned.
	merged := signing.Merge(results...)
	out := policy.SignatureFacts{State: merged.State, Error: merged.Error}
	for _, s := range merged.Signers {
		out.Signers = append(out.Signers, policy.Signer{KeyID: s.KeyID, Issuer: s.Issuer, Subject: s.Subject})
	}
	return out
}

// parentOf is the index a platform manifest was last served from, whose
// signature may cover it.
func (p *Pipeline) parentOf(d digest.Digest) digest.Digest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.parents[d]
}

// noteChildren remembers which index lists which platform manifests.
func (p *Pipeline) noteChildren(ctx context.Context, s proxy.Subject) {
	if p.o.Images == nil {
		return
	}
	children, err := p.o.Images.IndexChildren(ctx, s.Upstream, s.Repository, s.Digest)
	if err != nil {
		p.log.Warn("read index", "digest", s.Digest, "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.parents) >= settledLimit {
		p.parents = map[digest.Digest]digest.Digest{}
	}
	for _, c := range children {
		p.parents[digest.Digest(c.Digest.String())] = s.Digest
	}
}
