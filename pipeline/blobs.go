package pipeline

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/store"
)

// blobVerdict records which judged images a blob belongs to.
type blobVerdict struct {
	allowed int           // allowed or warned images containing it
	blocked digest.Digest // one blocked image containing it, for the message
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
	for _, b := range f.Blobs {
		v := p.blobs[digest.Digest(b)]
		if rec.Verdict == string(policy.Block) {
			v.blocked = digest.Digest(rec.Digest)
		} else {
			v.allowed++
		}
		p.blobs[digest.Digest(b)] = v
	}
}

// CheckBlob implements proxy.BlobGate: a blob is refused when it belongs to
// a blocked image and to no allowed one, so a blocked image cannot be pulled
// layer by layer. Blobs of images never judged here are served.
func (p *Pipeline) CheckBlob(_ context.Context, d digest.Digest) proxy.Decision {
	p.mu.Lock()
	v, ok := p.blobs[d]
	p.mu.Unlock()
	if !ok || v.allowed > 0 || v.blocked == "" {
		return proxy.Decision{Verdict: proxy.Allow}
	}
	return proxy.Decision{Verdict: proxy.Block, Details: "/api/v1/scans/" + v.blocked.String(),
		Message: fmt.Sprintf("portcullis: blob %s belongs to blocked image %s", d, v.blocked)}
}
