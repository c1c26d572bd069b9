package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/cache"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/store"
)

// Replicas sharing a state store and a storage take turns fetching a
// manifest, as they do blobs (cache.Leases): the one holding the lease asks
// the upstream and stores the answer (the manifest in the shared storage,
// a tag's resolution in the shared state) before it lets go; the others
// wait for that answer. A tag is thus fetched from its upstream once
// however many replicas are asked for it at once.

const (
	manifestLease   = 15 * time.Second
	maxManifestPoll = 500 * time.Millisecond
)

// tagKeys name a tag's resolution in the state: for any client (name) and
// for the client's Accept set (key).
type tagKeys struct{ name, key string }

// manifestTurn waits until this replica may fetch ref: it holds the lease
// (release when the answer is stored), or another replica stored an answer
// since the wait began (found). Without leases, or when they cannot be
// reached, it fetches at once.
func (p *Proxy) manifestTurn(ctx context.Context, up Upstream, repo, ref string, tk *tagKeys, leaseKey string) (release func(), found *upstream.Manifest, err error) {
	noop := func() {}
	if p.leases == nil {
		return noop, nil, nil
	}
	since := p.now()
	stored := func() (*upstream.Manifest, error) {
		d := digest.Digest(ref)
		if tk != nil {
			e, err := p.state.Tag(ctx, tk.key)
			if errors.Is(err, store.ErrNotFound) || (err == nil && e.CheckedAt.Before(since)) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			d = digest.Digest(e.Digest)
		}
		body, mt, err := p.cache.Manifest(ctx, d)
		if errors.Is(err, cache.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return &upstream.Manifest{Body: body, MediaType: mt, Digest: d}, nil
	}
	wait := 20 * time.Millisecond
	for {
		ok, err := p.leases.Acquire(ctx, leaseKey, p.replica, manifestLease)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			p.log.Warn("manifest lease unavailable; fetching without it", "manifest", leaseKey, "err", err)
			return noop, nil, nil
		}
		m, serr := stored()
		if ok {
			release := func() {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				if err := p.leases.Release(rctx, leaseKey, p.replica); err != nil {
					p.log.Warn("release manifest lease", "manifest", leaseKey, "err", err)
				}
			}
			if serr != nil || m != nil {
				// The previous holder stored it just before letting go.
				release()
				return noop, m, serr
			}
			return release, nil, nil
		}
		if serr != nil || m != nil {
			return noop, m, serr
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("wait for another replica's fetch of %s: %w", leaseKey, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, maxManifestPoll)
	}
}
