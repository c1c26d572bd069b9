package pipeline

import (
	"context"
	"errors"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/signing"
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

// maxParentsChecked bounds the indexes whose signatures may cover one
// manifest: each costs signature lookups upstream.
const maxParentsChecked = 16

// signatureFacts verifies the signatures of digest d, looked up in
// upstream/repo (cosign's tags and referrers live per repository), against
// what the rule trusts; a signed index of the same repository that lists d
// covers it. Keys and keyless identities are checked separately: the
// transparency-log requirement is about keyless signatures.
func (p *Pipeline) signatureFacts(ctx context.Context, d, upstream, repo string, rule policy.Rule) policy.SignatureFacts {
	sr := rule.Signature
	if sr == nil || p.o.Registry == nil {
		return policy.SignatureFacts{State: policy.SignatureNotChecked}
	}
	reg := upstreamRegistry{reg: p.o.Registry, upstream: upstream}
	var parents []string
	err := p.o.Store.Parents(ctx, upstream, repo, d, func(index string) bool {
		parents = append(parents, index)
		return len(parents) < maxParentsChecked
	})
	if err != nil {
		return policy.SignatureFacts{State: policy.SignatureError, Error: "indexes listing " + d + ": " + err.Error()}
	}
	verify := func(t signing.Trust) signing.Result {
		return signing.VerifyWithIndexes(ctx, reg, repo, d, parents, t)
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
