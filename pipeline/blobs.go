package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/store"
)

// blobVerdict records which judged images a blob belongs to, by their
// current verdict: an image judged again moves from one set to the other.
type blobVerdict struct {
	allowed map[digest.Digest]bool // allowed or warned images containing it
	blocked map[digest.Digest]bool // blocked images containing it
}

// noteBlobs records the verdict of an image for each of its blobs.
func (p *Pipeline) noteBlobs(rec store.ScanRecord) {
	var f imageFacts
	if rec.Verdict == "" || len(rec.Facts) == 0 || json.Unmarshal(rec.Facts, &f) != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.blobs) >= settledLimit {
		p.blobs = map[digest.Digest]blobVerdict{}
	}
	image := digest.Digest(rec.Digest)
	for _, b := range f.Blobs {
		v, ok := p.blobs[digest.Digest(b)]
		if !ok {
			v = blobVerdict{allowed: map[digest.Digest]bool{}, blocked: map[digest.Digest]bool{}}
			p.blobs[digest.Digest(b)] = v
		}
		if rec.Verdict == string(policy.Block) {
			delete(v.allowed, image)
			v.blocked[image] = true
		} else {
			delete(v.blocked, image)
			v.allowed[image] = true
		}
	}
}

// CheckBlob implements proxy.BlobGate: a blob is refused when it belongs to
// a blocked image and to no allowed one, so a blocked image cannot be pulled
// layer by layer. Blobs of images never judged here are served.
func (p *Pipeline) CheckBlob(_ context.Context, d digest.Digest) proxy.Decision {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.blobs[d]
	if !ok || len(v.allowed) > 0 || len(v.blocked) == 0 {
		return proxy.Decision{Verdict: proxy.Allow}
	}
	blocked := slices.Min(slices.Collect(maps.Keys(v.blocked))) // any one, the same each time
	return proxy.Decision{Verdict: proxy.Block, Details: "/api/v1/scans/" + blocked.String(),
		Message: fmt.Sprintf("portcullis: blob %s belongs to blocked image %s", d, blocked)}
}
