package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/opencontainers/go-digest"
)

// Resolved is an image reference resolved through the proxy.
type Resolved struct {
	Upstream   string
	Repository string
	Digest     digest.Digest
	MediaType  string
}

// ErrBadReference means a reference could not be parsed or routed.
var ErrBadReference = errors.New("bad image reference")

// ErrUnknownRegistry (with ErrBadReference) means a reference names a
// registry that is not a configured upstream: the mirror cannot serve it.
var ErrUnknownRegistry = errors.New("registry not configured on this mirror")

// Resolve resolves "ghcr.io/org/app:1.0", "org/app@sha256:…" (default
// upstream) and the like exactly as a pull of it through the mirror would:
// same routing, same tag cache, and the manifest ends up cached.
func (p *Proxy) Resolve(ctx context.Context, ref string) (Resolved, error) {
	repoPath, tagOrDigest := splitReference(ref)
	if repoPath == "" || tagOrDigest == "" {
		return Resolved{}, fmt.Errorf("%w: %q: want [registry/]repository(:tag|@digest)", ErrBadReference, ref)
	}
	rt, rerr := p.router.parse(&url.URL{Path: "/v2/" + repoPath + "/manifests/" + tagOrDigest})
	if rerr != nil {
		if rerr.unknownRegistry {
			return Resolved{}, fmt.Errorf("%w: %w: %q: %s", ErrBadReference, ErrUnknownRegistry, ref, rerr.Message)
		}
		return Resolved{}, fmt.Errorf("%w: %q: %s", ErrBadReference, ref, rerr.Message)
	}
	// The same rules as a pull: resolving fetches and caches the manifest.
	if p.access != nil {
		if err := p.access.Allow(ctx, rt.upstream, rt.repo); err != nil {
			return Resolved{}, fmt.Errorf("%w: %s: %w", ErrAccessDenied, ref, err)
		}
	}
	if ref := p.curate(ctx, rt.upstream, rt.repo, rt.ref); ref != nil && !ref.Warn {
		return Resolved{}, fmt.Errorf("%w: %w", ErrAccessDenied, ref)
	}
	m, rerr := p.manifest(ctx, p.upstreamFor(rt), rt, p.accepts.standard())
	if rerr != nil {
		return Resolved{}, rerr
	}
	return Resolved{Upstream: rt.upstream, Repository: rt.repo, Digest: m.digest, MediaType: m.mediaType}, nil
}

// splitReference splits at "@" or at the tag's ":" (a ":" before the last
// "/" belongs to a registry port). A reference without either means latest.
func splitReference(ref string) (repo, tagOrDigest string) {
	if i := strings.Index(ref, "@"); i >= 0 {
		return ref[:i], ref[i+1:]
	}
	slash := strings.LastIndex(ref, "/")
	if i := strings.LastIndex(ref, ":"); i > slash {
		return ref[:i], ref[i+1:]
	}
	return ref, "latest"
}
