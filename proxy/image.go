package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/cache"
	"github.com/portcullis/portcullis/proxy/upstream"
)

// ErrNotAnImage means a digest names an index or an artifact, not an image
// with layers.
var ErrNotAnImage = errors.New("not an image manifest")

// maxConfigSize bounds an image config read into memory.
const maxConfigSize = 8 << 20

// Image returns manifest d of repo on the named upstream as an image whose
// bytes come through the cache like any client's: reading it warms the
// cache, and nothing cached is downloaded again. ctx bounds every read made
// through the returned image.
func (p *Proxy) Image(ctx context.Context, upstreamName, repo string, d digest.Digest) (v1.Image, error) {
	up, err := p.upstreamNamed(upstreamName)
	if err != nil {
		return nil, fmt.Errorf("image %s/%s@%s: %w", upstreamName, repo, d, err)
	}
	m, rerr := p.manifestByDigest(ctx, up, repo, d, p.accepts.standard())
	if rerr != nil {
		return nil, fmt.Errorf("image %s/%s@%s: %w", upstreamName, repo, d, rerr)
	}
	if !isImageManifest(m.mediaType) {
		return nil, fmt.Errorf("image %s/%s@%s (%s): %w", upstreamName, repo, d, m.mediaType, ErrNotAnImage)
	}
	var parsed v1.Manifest
	if err := json.Unmarshal(m.body, &parsed); err != nil {
		return nil, fmt.Errorf("image %s/%s@%s: parse manifest: %w", upstreamName, repo, d, err)
	}
	return partial.CompressedToImage(&cachedImage{ctx: ctx, p: p, up: up, repo: repo, raw: m.body, mediaType: m.mediaType, manifest: &parsed})
}

// IndexChildren lists the manifests an index refers to, with their platforms.
func (p *Proxy) IndexChildren(ctx context.Context, upstreamName, repo string, d digest.Digest) ([]v1.Descriptor, error) {
	up, err := p.upstreamNamed(upstreamName)
	if err != nil {
		return nil, fmt.Errorf("index %s/%s@%s: %w", upstreamName, repo, d, err)
	}
	m, rerr := p.manifestByDigest(ctx, up, repo, d, p.accepts.standard())
	if rerr != nil {
		return nil, fmt.Errorf("index %s/%s@%s: %w", upstreamName, repo, d, rerr)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(m.body))
	if err != nil {
		return nil, fmt.Errorf("index %s/%s@%s: %w", upstreamName, repo, d, err)
	}
	return idx.Manifests, nil
}

// cachedImage implements partial.CompressedImageCore over the proxy.
type cachedImage struct {
	ctx       context.Context
	p         *Proxy
	up        Upstream
	repo      string
	raw       []byte
	mediaType string
	manifest  *v1.Manifest
}

func (ci *cachedImage) RawManifest() ([]byte, error) { return ci.raw, nil }

func (ci *cachedImage) MediaType() (types.MediaType, error) {
	return types.MediaType(ci.mediaType), nil
}

func (ci *cachedImage) RawConfigFile() ([]byte, error) {
	rc, err := ci.open(ci.manifest.Config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", ci.manifest.Config.Digest, err)
	}
	if len(b) > maxConfigSize {
		return nil, fmt.Errorf("config %s larger than %d bytes", ci.manifest.Config.Digest, maxConfigSize)
	}
	return b, nil
}

func (ci *cachedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range ci.manifest.Layers {
		if l.Digest == h {
			return &cachedLayer{ci: ci, desc: l}, nil
		}
	}
	if ci.manifest.Config.Digest == h {
		return &cachedLayer{ci: ci, desc: ci.manifest.Config}, nil
	}
	return nil, fmt.Errorf("blob %s is not in manifest", h)
}

// open reads a blob through the fetcher: from the cache, or one shared
// download that also fills the cache and stops at the declared size.
func (ci *cachedImage) open(desc v1.Descriptor) (io.ReadCloser, error) {
	d, err := digest.Parse(desc.Digest.String())
	if err != nil {
		return nil, err
	}
	return ci.p.readBlob(ci.ctx, ci.up, ci.repo, d, desc.Size)
}

// readBlob returns blob d whole, opened through openBlob (size as there);
// the handle is released when the reader is closed.
func (p *Proxy) readBlob(ctx context.Context, up Upstream, repo string, d digest.Digest, size int64) (io.ReadCloser, error) {
	handle, err := p.openBlob(ctx, up, repo, d, size)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	rc, err := handle.Reader(ctx)
	if err != nil {
		handle.Close()
		return nil, err
	}
	return &handleReader{ReadCloser: rc, handle: handle}, nil
}

type handleReader struct {
	io.ReadCloser
	handle *cache.Handle
}

func (r *handleReader) Close() error {
	err := r.ReadCloser.Close()
	r.handle.Close()
	return err
}

type cachedLayer struct {
	ci   *cachedImage
	desc v1.Descriptor
}

func (l *cachedLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *cachedLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *cachedLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

// Compressed refuses non-distributable layers: they live on foreign servers
// the mirror does not fetch from.
func (l *cachedLayer) Compressed() (io.ReadCloser, error) {
	if !l.desc.MediaType.IsDistributable() {
		return nil, fmt.Errorf("layer %s (%s) is non-distributable: %w", l.desc.Digest, l.desc.MediaType, ErrForeignLayer)
	}
	return l.ci.open(l.desc)
}

// ErrForeignLayer marks a layer the mirror does not fetch.
var ErrForeignLayer = errors.New("foreign layer")

// Tags lists a repository's tags upstream (for freshness checks).
func (p *Proxy) Tags(ctx context.Context, upstreamName, repo string) ([]string, error) {
	up, err := p.upstreamNamed(upstreamName)
	if err != nil {
		return nil, fmt.Errorf("tags of %s/%s: %w", upstreamName, repo, err)
	}
	return up.Client.Tags(ctx, repo)
}

// upstreamNamed returns the configured upstream called name.
func (p *Proxy) upstreamNamed(name string) (Upstream, error) {
	up, ok := p.upstreams[name]
	if !ok {
		return Upstream{}, fmt.Errorf("upstream %q is not configured", name)
	}
	return up, nil
}

// ErrNotFound marks what the upstream does not have (wrapped).
var ErrNotFound = errors.New("not found")

// asError turns a handler error into a Go error for library callers.
func asError(rerr *regError) error {
	if rerr.Status == http.StatusNotFound {
		return fmt.Errorf("%s: %w", rerr.Message, ErrNotFound)
	}
	return rerr
}

// Manifest returns a manifest by tag or digest through the cache, as a pull
// would (signature discovery reads cosign's .sig tags this way).
func (p *Proxy) Manifest(ctx context.Context, upstreamName, repo, reference string) ([]byte, string, digest.Digest, error) {
	up, err := p.upstreamNamed(upstreamName)
	if err != nil {
		return nil, "", "", err
	}
	m, rerr := p.manifest(ctx, up, route{upstream: upstreamName, repo: repo, ref: reference}, p.accepts.standard())
	if rerr != nil {
		return nil, "", "", asError(rerr)
	}
	return m.body, m.mediaType, m.digest, nil
}

// Blob reads a blob through the cache (one shared download on a miss).
func (p *Proxy) Blob(ctx context.Context, upstreamName, repo string, d digest.Digest) (io.ReadCloser, error) {
	up, err := p.upstreamNamed(upstreamName)
	if err != nil {
		return nil, err
	}
	// Only digests a download can be verified against: sha256, sha512.
	if _, err := parseDigest(string(d)); err != nil {
		return nil, fmt.Errorf("blob %q: %w", d, err)
	}
	rc, err := p.readBlob(ctx, up, repo, d, -1)
	if upstream.IsNotFound(err) {
		return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	return rc, err
}

// Referrers returns the upstream's referrers index of d, without what
// Portcullis published about it.
func (p *Proxy) Referrers(ctx context.Context, upstreamName, repo string, d digest.Digest, artifactType string) ([]byte, error) {
	up, err := p.upstreamNamed(upstreamName)
	if err != nil {
		return nil, err
	}
	// Only the upstream's: what Portcullis published is not evidence
	// about the image (a proxy-signed verdict must not count as a signature).
	idx, rerr := p.referrers(ctx, up, repo, d, artifactType, false)
	if rerr != nil {
		return nil, asError(rerr)
	}
	return json.Marshal(idx)
}
