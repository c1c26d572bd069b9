package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/cache"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/store"
)

// Values of the Portcullis-Cache response header.
const (
	cacheHit         = "hit"         // served from cache without asking upstream
	cacheMiss        = "miss"        // fetched from upstream now
	cacheRevalidated = "revalidated" // tag checked upstream, content from cache
	cacheStale       = "stale"       // upstream failed; last known content served
	cacheLocal       = "local"       // published by Portcullis itself (verdicts, SBOMs)
)

// localContent looks up content Portcullis published itself.
func (p *Proxy) localContent(ctx context.Context, d digest.Digest) (store.Content, bool) {
	if p.local == nil {
		return store.Content{}, false
	}
	c, err := p.local.Content(ctx, d.String())
	return c, err == nil
}

// localCosignTag finds what Portcullis published under cosign's tag for a
// digest, sha256-<hex><suffix>.
func (p *Proxy) localCosignTag(ctx context.Context, rt route, suffix string) (manifestResult, bool) {
	tag := rt.ref
	if p.local == nil || !strings.HasPrefix(tag, "sha256-") || !strings.HasSuffix(tag, suffix) {
		return manifestResult{}, false
	}
	d, err := p.local.LocalTag(ctx, store.LocalTagKey(rt.upstream, rt.repo, tag))
	if err != nil {
		return manifestResult{}, false
	}
	c, ok := p.localContent(ctx, digest.Digest(d))
	if !ok {
		return manifestResult{}, false
	}
	return manifestResult{body: c.Body, mediaType: c.MediaType, digest: digest.Digest(d), cache: cacheLocal}, true
}

// manifestTypes are the manifest media types the proxy serves, in the
// order it asks upstreams for them.
var manifestTypes = []string{
	ociIndexType,
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}

func isManifestType(mt string) bool { return slices.Contains(manifestTypes, mt) }

// defaultAccept is what we ask for when a client names no manifest types,
// so upstreams do not fall back to legacy formats.
func defaultAccept() []string { return slices.Clone(manifestTypes) }

// Bounds on the Accept header of a manifest request. Registry clients send
// fewer than 20 types in a few hundred bytes; the bounds keep a hostile
// header from costing CPU or memo memory, and a request past them gets a
// clear 400 rather than a silently shortened list: dropping types could make
// the upstream answer with a manifest the client did not ask for.
const (
	maxAcceptBytes = 64 << 10 // all Accept values together
	maxAcceptTypes = 128      // distinct media types
)

// parseAccept turns Accept header values into a list of media types, passed
// upstream so the upstream picks the same manifest it would for the client.
// Duplicates are dropped (first occurrence wins, keeping the client's order).
func parseAccept(values []string) ([]string, *regError) {
	total := 0
	for _, v := range values {
		total += len(v)
	}
	if total > maxAcceptBytes {
		return nil, errorf(http.StatusBadRequest, "UNSUPPORTED", "Accept header of %d bytes exceeds the limit of %d", total, maxAcceptBytes)
	}
	var out []string
	seen := map[string]bool{}
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || mt == "" || mt == "*/*" || seen[mt] {
				continue
			}
			if len(out) == maxAcceptTypes {
				return nil, errorf(http.StatusBadRequest, "UNSUPPORTED", "Accept header lists more than %d media types", maxAcceptTypes)
			}
			seen[mt] = true
			out = append(out, mt)
		}
	}
	if len(out) == 0 {
		return defaultAccept(), nil
	}
	return out, nil
}

// acceptKey identifies a set of accepted types: the same tag can resolve to
// different manifests for clients that accept different types. It is part
// of tag cache keys, so it is a cryptographic hash: a client must not be
// able to craft a set that collides with another client's and so choose
// what a tag resolves to for them.
func acceptKey(accept []string) string {
	sorted := slices.Sorted(slices.Values(accept))
	h := sha256.New()
	for _, s := range sorted {
		// Length-prefixed, so no two lists encode alike.
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(s))))
		h.Write([]byte(s))
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

type manifestResult struct {
	body      []byte
	mediaType string
	digest    digest.Digest
	cache     string
}

func (p *Proxy) serveManifest(w http.ResponseWriter, r *http.Request, rt route, info *requestInfo) *regError {
	ctx, cancel := p.detach(r.Context())
	defer cancel()
	up := p.upstreamFor(rt)
	accept, rerr := p.accepts.lookup(r.Header.Values("Accept"))
	if rerr != nil {
		return rerr
	}
	m, rerr := p.manifest(ctx, up, rt, accept)
	if rerr != nil {
		return rerr
	}
	info.cache = m.cache

	dec, err := info.gate.Check(ctx, Subject{Upstream: rt.upstream, Repository: rt.repo, Reference: rt.ref, Digest: m.digest, MediaType: m.mediaType, Manifest: m.body})
	if err != nil {
		return errInternal("evaluate "+rt.upstream+"/"+rt.repo+"@"+m.digest.String(), err)
	}
	dec = withCurationWarning(dec, info.curationWarning)
	h := w.Header()
	switch dec.Verdict {
	case Block:
		p.metrics.Blocked(r.Context(), dec.Reason)
		if p.blockedPulls != nil {
			p.blockedPulls.Inc(dec.Reason)
		}
		return errorf(http.StatusForbidden, "DENIED", "%s", p.withDetails(r, dec))
	case Warn:
		h.Set("Portcullis-Verdict", "warn")
		h.Set("Portcullis-Reason", dec.Message)
		if dec.Details != "" {
			h.Set("Portcullis-Details", p.link(r, dec.Details))
		}
	}

	h.Set("Content-Type", m.mediaType)
	h.Set("Docker-Content-Digest", m.digest.String())
	h.Set("Content-Length", strconv.Itoa(len(m.body)))
	h.Set("Etag", `"`+m.digest.String()+`"`)
	h.Set("Portcullis-Cache", m.cache)
	if m.cache == cacheStale {
		h.Set("Warning", `110 portcullis "Response is Stale: upstream unavailable"`)
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(m.body)
	}
	return nil
}

// manifest resolves rt.ref, a tag or a digest, to a manifest: the one
// lookup pulls, Resolve and Manifest share.
func (p *Proxy) manifest(ctx context.Context, up Upstream, rt route, pa parsedAccept) (manifestResult, *regError) {
	d := rt.digest
	if d == "" {
		if !isDigest(rt.ref) {
			return p.manifestByTag(ctx, up, rt, pa)
		}
		// A route built without the router (Proxy.Manifest) is unvalidated.
		var err error
		if d, err = parseDigest(rt.ref); err != nil {
			return manifestResult{}, errorf(http.StatusBadRequest, "MANIFEST_INVALID", "invalid manifest digest %q: %v", rt.ref, err)
		}
	}
	return p.manifestByDigest(ctx, up, rt.repo, d, pa)
}

// manifestByDigest serves from cache forever; a miss is fetched, verified
// and stored.
func (p *Proxy) manifestByDigest(ctx context.Context, up Upstream, repo string, d digest.Digest, pa parsedAccept) (manifestResult, *regError) {
	body, mt, err := p.cachedManifest(ctx, d)
	if err == nil {
		return manifestResult{body: body, mediaType: mt, digest: d, cache: cacheHit}, nil
	}
	if !errors.Is(err, cache.ErrNotFound) {
		return manifestResult{}, errInternal("read cache", err)
	}
	if c, ok := p.localContent(ctx, d); ok && isManifestType(c.MediaType) {
		return manifestResult{body: c.Body, mediaType: c.MediaType, digest: d, cache: cacheLocal}, nil
	}
	m, err := p.fetchManifest(ctx, up, repo, d.String(), pa, nil)
	if err != nil {
		return manifestResult{}, fromUpstream("fetch manifest "+up.Client.Name()+"/"+repo+"@"+d.String(), err, "MANIFEST_UNKNOWN")
	}
	return manifestResult{body: m.Body, mediaType: m.MediaType, digest: m.Digest, cache: cacheMiss}, nil
}

// fetchManifest gets a manifest from upstream and caches it, once however
// many requests ask at the same time. The shared fetch does not depend on
// the request that started it: a client that leaves does not fail the others.
func (p *Proxy) fetchManifest(ctx context.Context, up Upstream, repo, ref string, pa parsedAccept, tk *tagKeys) (*upstream.Manifest, error) {
	key := up.Client.Name() + "/" + repo + "@" + ref + "#" + pa.key
	ch := p.manifestFlight.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.manifestTimeout)
		defer cancel()
		release, stored, err := p.manifestTurn(fctx, up, repo, ref, tk, "manifest/"+key)
		if err != nil || stored != nil {
			return stored, err
		}
		defer release()
		m, err := up.Client.GetManifest(fctx, repo, ref, pa.types)
		if err != nil {
			return nil, err
		}
		if err := p.commitManifest(fctx, m.Digest, m.MediaType, m.Body); err != nil {
			// The client still gets verified bytes; only caching failed.
			p.log.Error("cache manifest", "digest", m.Digest, "err", err)
		}
		if tk != nil {
			// Before the lease goes: replicas waiting on it read this.
			p.rememberTag(fctx, tk.name, tk.key, manifestResult{body: m.Body, mediaType: m.MediaType, digest: m.Digest})
		}
		return m, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(*upstream.Manifest), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// manifestByTag resolves a tag through the TTL cache, revalidating with a
// HEAD upstream, and serves the last known digest when the upstream cannot
// answer (stale-if-error).
func (p *Proxy) manifestByTag(ctx context.Context, up Upstream, rt route, pa parsedAccept) (manifestResult, *regError) {
	// cosign's signature tag of content Portcullis published and signed
	// itself; such digests exist nowhere upstream.
	if m, ok := p.localCosignTag(ctx, rt, ".sig"); ok {
		return m, nil
	}
	// The attestations Portcullis published for the digest the tag names.
	if ours, ok := p.localCosignTag(ctx, rt, ".att"); ok {
		theirs, rerr := p.upstreamTag(ctx, up, rt, pa)
		return p.mergeAttestations(ctx, rt, ours, theirs, rerr)
	}
	return p.upstreamTag(ctx, up, rt, pa)
}

// upstreamTag is manifestByTag for tags only the upstream knows.
func (p *Proxy) upstreamTag(ctx context.Context, up Upstream, rt route, pa parsedAccept) (manifestResult, *regError) {
	accept := pa.types
	name := up.Client.Name() + "/" + rt.repo + ":" + rt.ref
	key := name + "@" + pa.key
	known, have := p.tags.get(key)
	if !have || !up.tagFresh(p.now().Sub(known.CheckedAt)) {
		// Another replica may have revalidated it since.
		e, err := p.state.Tag(ctx, key)
		switch {
		case err == nil:
			known, have = e, true
			p.tags.put(key, e)
		case !errors.Is(err, store.ErrNotFound):
			// The shared state is unreachable: what this process knows
			// stands, and the upstream is asked as usual.
			p.log.Warn("read tag cache", "tag", key, "err", err)
		}
	}
	if have && up.tagFresh(p.now().Sub(known.CheckedAt)) {
		m, rerr := p.manifestByDigest(ctx, up, rt.repo, digest.Digest(known.Digest), pa)
		return m, rerr
	}
	if have {
		desc, err := up.Client.HeadManifest(ctx, rt.repo, rt.ref, accept)
		switch {
		case err == nil && desc.Digest != "":
			m, rerr := p.manifestByDigest(ctx, up, rt.repo, desc.Digest, pa)
			if rerr != nil {
				return m, rerr
			}
			if m.cache == cacheHit {
				m.cache = cacheRevalidated
			}
			p.rememberTag(ctx, name, key, m)
			return m, nil
		case err == nil:
			// No digest in the HEAD answer: fall through to a GET.
		case upstream.Temporary(err):
			if m, ok := p.stale(ctx, name, &known, accept, err); ok {
				return m, nil
			}
			return manifestResult{}, fromUpstream("resolve "+name, err, "MANIFEST_UNKNOWN")
		default:
			return manifestResult{}, fromUpstream("resolve "+name, err, "MANIFEST_UNKNOWN")
		}
	}
	mf, err := p.fetchManifest(ctx, up, rt.repo, rt.ref, pa, &tagKeys{name: name, key: key})
	if err != nil {
		if upstream.Temporary(err) {
			if m, ok := p.stale(ctx, name, nil, accept, err); ok {
				return m, nil
			}
		}
		return manifestResult{}, fromUpstream("fetch manifest "+name, err, "MANIFEST_UNKNOWN")
	}
	return manifestResult{body: mf.Body, mediaType: mf.MediaType, digest: mf.Digest, cache: cacheMiss}, nil
}

// stale finds the last known manifest for a tag when the upstream cannot
// answer: the one resolved for this client's Accept set, else the last one
// resolved for any client, if this client accepts its media type.
func (p *Proxy) stale(ctx context.Context, name string, known *store.TagEntry, accept []string, cause error) (manifestResult, bool) {
	var candidates []store.TagEntry
	if known != nil {
		candidates = append(candidates, *known)
	}
	if e, err := p.state.Tag(ctx, name); err == nil && slices.Contains(accept, e.MediaType) {
		candidates = append(candidates, e)
	}
	for _, e := range candidates {
		d := digest.Digest(e.Digest)
		if body, mt, err := p.cache.Manifest(ctx, d); err == nil {
			p.log.Warn("serving stale tag", "tag", name, "digest", d, "err", cause)
			return manifestResult{body: body, mediaType: mt, digest: d, cache: cacheStale}, true
		}
	}
	return manifestResult{}, false
}

// rememberTag records what the tag resolved to for this Accept set (key),
// and under name as the tag's latest answer for any client (the stale
// fallback).
func (p *Proxy) rememberTag(ctx context.Context, name, key string, m manifestResult) {
	e := store.TagEntry{Digest: m.digest.String(), MediaType: m.mediaType, Size: int64(len(m.body)), CheckedAt: p.now()}
	p.tags.put(key, e)
	for _, k := range []string{key, name} {
		if err := p.state.PutTag(ctx, k, e); err != nil {
			p.log.Error("remember tag", "key", k, "err", err)
		}
	}
}
