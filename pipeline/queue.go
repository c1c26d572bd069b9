package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/store"
)

// Enqueue queues a scan of manifest d unless a usable result exists or one
// is already queued. Indexes queue their children when AllPlatforms is set.
func (p *Pipeline) Enqueue(ctx context.Context, upstream, repo string, d digest.Digest, mediaType string) error {
	return p.enqueue(ctx, job{upstream: upstream, repo: repo, digest: d}, mediaType, p.o.AllPlatforms)
}

// Request is Enqueue for someone asking explicitly (the API): an index
// queues all its platforms.
func (p *Pipeline) Request(ctx context.Context, upstream, repo string, d digest.Digest, mediaType string) error {
	return p.enqueue(ctx, job{upstream: upstream, repo: repo, digest: d}, mediaType, true)
}

func (p *Pipeline) enqueue(ctx context.Context, j job, mediaType string, allPlatforms bool) error {
	d := j.digest
	p.mu.Lock()
	settled := p.settled[d]
	p.mu.Unlock()
	if settled {
		return nil
	}
	if isIndex(mediaType) {
		if !allPlatforms {
			return nil // the children clients pull are queued when served
		}
		leaves, err := p.platformManifests(ctx, j.upstream, j.repo, d)
		if err != nil {
			return err
		}
		for _, leaf := range leaves {
			if err := p.enqueueManifest(ctx, job{upstream: j.upstream, repo: j.repo, digest: leaf}); err != nil {
				return err
			}
		}
		if allPlatforms == p.o.AllPlatforms {
			p.settle(d)
		}
		return nil
	}
	return p.enqueueManifest(ctx, j)
}

// Bounds on walking an index (outside input: anyone can push an index
// listing itself, or the same child thousands of times, nested).
const (
	maxIndexDepth     = 4    // an index inside an index inside … (real ones: 1)
	maxIndexManifests = 1024 // distinct manifests one walk visits
)

// defaultMaxQueued bounds the verdicts pulls may ask this process to
// decide at once (decisions.go); the scan queue's bound is the store's.
const defaultMaxQueued = 10_000

// ErrQueueFull is returned when the queue holds as many jobs as it may;
// the digest is queued by a later pull.
var ErrQueueFull = errors.New("scan queue full")

// ErrIndexTooLarge is returned for an index nested deeper, or listing more
// manifests, than Portcullis walks.
var ErrIndexTooLarge = errors.New("index too large")

// platformManifests lists the image manifests an index leads to, visiting
// each digest once, within maxIndexDepth and maxIndexManifests, and
// stopping when ctx ends.
func (p *Pipeline) platformManifests(ctx context.Context, upstream, repo string, index digest.Digest) ([]digest.Digest, error) {
	seen := map[digest.Digest]bool{index: true}
	level := []digest.Digest{index}
	var leaves []digest.Digest
	for depth := 1; len(level) > 0; depth++ {
		if depth > maxIndexDepth {
			return nil, fmt.Errorf("index %s/%s@%s nests indexes more than %d deep: %w", upstream, repo, index, maxIndexDepth, ErrIndexTooLarge)
		}
		var next []digest.Digest
		for _, idx := range level {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			children, err := p.o.Images.IndexChildren(ctx, upstream, repo, idx)
			if err != nil {
				return nil, err
			}
			for _, c := range children {
				cd := digest.Digest(c.Digest.String())
				if seen[cd] {
					continue
				}
				seen[cd] = true
				if len(seen) > maxIndexManifests {
					return nil, fmt.Errorf("index %s/%s@%s leads to more than %d manifests: %w", upstream, repo, index, maxIndexManifests, ErrIndexTooLarge)
				}
				if isIndex(string(c.MediaType)) {
					next = append(next, cd)
				} else {
					leaves = append(leaves, cd)
				}
			}
		}
		level = next
	}
	return leaves, nil
}

// jobPayload is a scan job as the queue carries it.
type jobPayload struct {
	Upstream   string `json:"upstream"`
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest"`
	// TraceParent is the pull that queued it (W3C traceparent), so the
	// evaluation's trace links to it; empty with tracing off.
	TraceParent string `json:"traceparent,omitempty"`
}

// enqueueManifest queues the scan of one image manifest: in the store's
// queue, deduplicated per digest cluster-wide, then marked pending.
func (p *Pipeline) enqueueManifest(ctx context.Context, j job) error {
	d := j.digest
	if p.o.Queue == nil {
		return fmt.Errorf("scan of %s/%s@%s: the pipeline has no queue", j.upstream, j.repo, d)
	}
	rec, err := p.o.Store.Scan(ctx, d.String())
	switch {
	case errors.Is(err, store.ErrNotFound):
		rec = store.ScanRecord{}
	case err != nil:
		return err
	case rec.State == store.ScanDone && rec.ScannerVersion == p.o.ScannerVersion:
		p.settle(d)
		return nil
	case rec.State == store.ScanFailed && p.now().Sub(rec.UpdatedAt) < p.o.RetryFailedAfter:
		return nil
	}
	payload, err := json.Marshal(jobPayload{Upstream: j.upstream, Repository: j.repo, Tag: j.tag, Digest: d.String(), TraceParent: traceParent(ctx)})
	if err != nil {
		return err
	}
	// Queued again even when the record says pending: the queue keeps one
	// job per digest, and puts back a job it lost (a Redis restart).
	added, err := p.o.Queue.Enqueue(ctx, d.String(), payload)
	switch {
	case errors.Is(err, store.ErrQueueFull):
		return fmt.Errorf("scan of %s/%s@%s: %w", j.upstream, j.repo, d, ErrQueueFull)
	case err != nil:
		return fmt.Errorf("queue scan of %s/%s@%s: %w", j.upstream, j.repo, d, err)
	case !added && rec.State == store.ScanPending:
		return nil // queued or being scanned, here or on another replica
	}
	// Pending: written over the record read before queueing, so a result
	// a fast worker wrote meanwhile is never overwritten.
	pending := store.ScanRecord{Digest: d.String(), State: store.ScanPending, Upstream: j.upstream, Repository: j.repo}
	keepFromPrevious(&pending, rec)
	pending.QueuedAt, pending.UpdatedAt = p.now(), p.now()
	if err := p.o.Store.PutScan(ctx, &pending); err != nil && !errors.Is(err, store.ErrConflict) {
		return err
	}
	return nil
}
