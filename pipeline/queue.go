package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/store"
)

// claim marks d as queued in this process; false if it already is.
func (p *Pipeline) claim(d digest.Digest) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.finished[d] != nil {
		return false
	}
	p.finished[d] = make(chan struct{})
	return true
}

// unclaim ends d's claim and wakes the gates waiting on it.
func (p *Pipeline) unclaim(d digest.Digest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ch := p.finished[d]; ch != nil {
		close(ch)
		delete(p.finished, d)
	}
}

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

// defaultMaxQueued bounds the scans queued or running in this process:
// every distinct digest pulled or requested queues one, and each costs
// memory until its turn.
const defaultMaxQueued = 10_000

// ErrQueueFull is returned when that many scans are waiting already; the
// digest is queued by a later pull.
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

// enqueueManifest queues the scan of one image manifest.
func (p *Pipeline) enqueueManifest(ctx context.Context, j job) error {
	d := j.digest
	p.mu.Lock()
	full := len(p.finished) >= p.maxQueued
	p.mu.Unlock()
	if full {
		return fmt.Errorf("scan of %s/%s@%s: %w", j.upstream, j.repo, d, ErrQueueFull)
	}
	// Claim the digest before looking at the store, so a racing request
	// cannot read "nothing yet" while this one's scan starts and ends.
	if !p.claim(d) {
		return nil
	}
	unclaim := func() { p.unclaim(d) }
	rec, err := p.o.Store.Scan(ctx, d.String())
	switch {
	case errors.Is(err, store.ErrNotFound):
		rec = store.ScanRecord{}
	case err != nil:
		unclaim()
		return err
	case rec.State == store.ScanDone && rec.ScannerVersion == p.o.ScannerVersion:
		unclaim()
		p.settle(d)
		return nil
	case rec.State == store.ScanFailed && p.now().Sub(rec.UpdatedAt) < p.o.RetryFailedAfter:
		unclaim()
		return nil
	case rec.State == store.ScanPending && p.now().Sub(rec.QueuedAt) < p.o.ScanTimeout:
		// Queued by another replica, or by this process before a
		// restart (Run resumes those).
		unclaim()
		return nil
	}
	// Pending again: the verdict history and what the policy remembers
	// about the digest stay.
	pending := store.ScanRecord{Digest: d.String(), State: store.ScanPending, Upstream: j.upstream, Repository: j.repo}
	keepFromPrevious(&pending, rec)
	pending.QueuedAt, pending.UpdatedAt = p.now(), p.now()
	if err := p.o.Store.PutScan(ctx, &pending); err != nil {
		unclaim()
		if errors.Is(err, store.ErrConflict) {
			return nil // another replica queued or finished it meanwhile
		}
		return err
	}
	p.push(j)
	return nil
}

func (p *Pipeline) push(j job) {
	p.mu.Lock()
	p.queue = append(p.queue, j)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Pipeline) pop() (job, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return job{}, false
	}
	j := p.queue[0]
	p.queue = p.queue[1:]
	return j, true
}
