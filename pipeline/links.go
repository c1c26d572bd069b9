package pipeline

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/store"
)

// maxBlobsPerManifest bounds the relations one manifest (outside input)
// writes: real images have tens of layers, indexes tens of platforms.
const maxBlobsPerManifest = 10_000

type tooManyBlobsError struct{ n int }

func (e *tooManyBlobsError) Error() string {
	return fmt.Sprintf("the manifest lists %d blobs or manifests, more than the %d Portcullis tracks", e.n, maxBlobsPerManifest)
}

// manifestRefs reads the digests a manifest refers to: config and layers
// of an image, or the manifests of an index. Entries that are not valid
// digests are skipped: no client can fetch them.
func manifestRefs(body []byte) (blobs []store.BlobRef, children []string, err error) {
	type descriptor struct {
		Digest string `json:"digest"`
		Size   int64  `json:"size"`
	}
	var m struct {
		Config    *descriptor  `json:"config"`
		Layers    []descriptor `json:"layers"`
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, nil, fmt.Errorf("parse manifest: %w", err)
	}
	if n := len(m.Layers) + len(m.Manifests) + 1; n > maxBlobsPerManifest {
		return nil, nil, &tooManyBlobsError{n: n}
	}
	valid := func(d string) bool { _, err := digest.Parse(d); return err == nil }
	ref := func(d descriptor) store.BlobRef {
		if d.Size < 0 {
			d.Size = -1 // not a size anyone can serve
		}
		return store.BlobRef{Digest: d.Digest, Size: d.Size}
	}
	if m.Config != nil && valid(m.Config.Digest) {
		blobs = append(blobs, ref(*m.Config))
	}
	for _, l := range m.Layers {
		if valid(l.Digest) {
			blobs = append(blobs, ref(l))
		}
	}
	for _, c := range m.Manifests {
		if valid(c.Digest) {
			children = append(children, c.Digest)
		}
	}
	return blobs, children, nil
}

// linked reports whether the relations of image in upstream/repo were
// stored by this process already, and notes that they are (or are about to
// be: the caller stores them).
func (p *Pipeline) alreadyLinked(upstream, repo, image string) bool {
	k := upstream + "/" + repo + "@" + image
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.linked[k]
}

func (p *Pipeline) noteLinked(upstream, repo, image string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.linked) >= p.memoLimit {
		p.linked = map[string]bool{}
	}
	p.linked[upstream+"/"+repo+"@"+image] = true
}

// subjectBody is the manifest a subject names: the bytes the proxy is
// about to serve, or (callers that have none) read through the cache.
func (p *Pipeline) subjectBody(ctx context.Context, s proxy.Subject) ([]byte, error) {
	if s.Manifest != nil || p.o.Images == nil {
		return s.Manifest, nil
	}
	if isIndex(s.MediaType) {
		children, err := p.o.Images.IndexChildren(ctx, s.Upstream, s.Repository, s.Digest)
		if err != nil {
			return nil, err
		}
		return json.Marshal(map[string]any{"manifests": children})
	}
	img, err := p.o.Images.Image(ctx, s.Upstream, s.Repository, s.Digest)
	if err != nil {
		return nil, err
	}
	return img.RawManifest()
}

// linkImage stores which blobs the image s names references in its
// repository, once per process.
func (p *Pipeline) linkImage(ctx context.Context, s proxy.Subject) error {
	if p.alreadyLinked(s.Upstream, s.Repository, s.Digest.String()) {
		return nil
	}
	body, err := p.subjectBody(ctx, s)
	if err != nil {
		// Only callers that serve nothing pass no body; the scan records
		// why the manifest cannot be read.
		p.log.Warn("read manifest to link its blobs", "image", s.Upstream+"/"+s.Repository+"@"+s.Digest.String(), "err", err)
		return nil
	}
	blobs, _, err := manifestRefs(body)
	if err != nil {
		return fmt.Errorf("manifest %s/%s@%s: %w", s.Upstream, s.Repository, s.Digest, err)
	}
	if err := p.o.Store.LinkImage(ctx, s.Upstream, s.Repository, s.Digest.String(), blobs); err != nil {
		return err
	}
	p.noteLinked(s.Upstream, s.Repository, s.Digest.String())
	return nil
}

// linkImageFacts stores the blob relations of a scanned image in
// upstream/repo from its stored facts.
func (p *Pipeline) linkImageFacts(ctx context.Context, upstream, repo string, rec store.ScanRecord) error {
	if rec.Facts == nil || len(rec.Facts.Blobs) == 0 {
		return nil
	}
	if p.alreadyLinked(upstream, repo, rec.Digest) {
		return nil
	}
	blobs := make([]store.BlobRef, len(rec.Facts.Blobs))
	for i, b := range rec.Facts.Blobs {
		blobs[i] = store.BlobRef{Digest: b, Size: -1} // the manifest's link has the sizes
	}
	if err := p.o.Store.LinkImage(ctx, upstream, repo, rec.Digest, blobs); err != nil {
		return err
	}
	p.noteLinked(upstream, repo, rec.Digest)
	return nil
}

// linkIndex stores which manifests the index s names lists, in its
// repository, for signature inheritance.
func (p *Pipeline) linkIndex(ctx context.Context, s proxy.Subject) error {
	if p.alreadyLinked(s.Upstream, s.Repository, s.Digest.String()) {
		return nil
	}
	body, err := p.subjectBody(ctx, s)
	if err != nil {
		p.log.Warn("read index to link its manifests", "index", s.Upstream+"/"+s.Repository+"@"+s.Digest.String(), "err", err)
		return nil
	}
	_, children, err := manifestRefs(body)
	if err != nil {
		return fmt.Errorf("index %s/%s@%s: %w", s.Upstream, s.Repository, s.Digest, err)
	}
	if err := p.o.Store.LinkIndex(ctx, s.Upstream, s.Repository, s.Digest.String(), children); err != nil {
		return err
	}
	if p.o.Controls != nil {
		p.o.Controls.IndexLinked(s.Upstream, s.Repository, children)
	}
	p.noteLinked(s.Upstream, s.Repository, s.Digest.String())
	return nil
}
