package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/store"
)

// Verdicts and SBOMs are published by their own workers, fed by a queue of
// subjects (a digest in one repository), never by the decider: signing and
// writing artifacts neither delay a verdict nor depend on the replica that
// decided it. A publisher that dies leaves its job to another when its
// lease runs out. A subject is queued before its verdict is written (a
// decider that dies right after the write leaves the job behind) and again
// after (a verdict written while a publisher held the job is published
// too: see publishJob).

// publicationPayload is a publication job as the queue carries it.
type publicationPayload struct {
	Digest     string `json:"digest"`
	Upstream   string `json:"upstream"`
	Repository string `json:"repository"`
	// TraceParent is the evaluation that queued it (W3C traceparent), so
	// the publication's trace links to it; empty with tracing off.
	TraceParent string `json:"traceparent,omitempty"`
}

const (
	defaultPublishLease = 30 * time.Second
	// maxPublishAttempts bounds the times one subject's publication is
	// tried (a failed try is retried when its lease runs out).
	maxPublishAttempts = 5
)

// queuePublication asks for the stored verdict on digest in upstream/repo
// to be published. Failing to queue loses no verdict, only its artifacts
// until the next decision; it is logged.
func (p *Pipeline) queuePublication(ctx context.Context, dgst, upstream, repo string) {
	if p.o.Artifacts == nil || p.o.Publications == nil {
		return
	}
	payload, err := json.Marshal(publicationPayload{Digest: dgst, Upstream: upstream, Repository: repo, TraceParent: traceParent(ctx)})
	if err == nil {
		_, err = p.o.Publications.Enqueue(context.WithoutCancel(ctx), store.SubjectKey(upstream, repo, dgst), payload)
	}
	if err != nil {
		p.log.Warn("queue publication of verdict and SBOM", "image", upstream+"/"+repo+"@"+dgst, "err", err)
	}
}

// publishWork runs publication jobs until ctx ends.
func (p *Pipeline) publishWork(ctx context.Context) {
	// A re-match after a database update queues a publication for every
	// verdict it decides again: publishing (SBOM, signatures, referrers)
	// yields to pulls in flight like the re-match itself (pace.go), or it
	// would take the cores the re-match leaves to the pull path.
	pace := p.pace
	p.consume(ctx, p.o.Publications, p.publishLease, "publication", func(ctx context.Context, j store.Job) {
		started := time.Now()
		p.publishJob(ctx, j)
		_ = pace.yield(ctx, time.Since(started)) // ctx ended: the loop ends
	})
}

// consume claims jobs of q for this replica, under lease, and hands each
// to run, until ctx ends.
func (p *Pipeline) consume(ctx context.Context, q store.Queue, lease time.Duration, what string, run func(context.Context, store.Job)) {
	for ctx.Err() == nil {
		qj, err := q.Claim(ctx, p.o.Consumer, lease, time.Second)
		switch {
		case errors.Is(err, store.ErrNotFound):
			continue
		case err != nil:
			if ctx.Err() == nil {
				p.log.Warn("claim "+what+" job", "err", err)
				// The queue is unreachable: do not spin.
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		run(ctx, qj)
	}
}

// publishJob publishes what one claimed job names. A failed try keeps the
// job (its lease runs out and it is tried again, here or elsewhere).
func (p *Pipeline) publishJob(ctx context.Context, qj store.Job) {
	var pl publicationPayload
	if err := json.Unmarshal(qj.Payload, &pl); err != nil || digest.Digest(pl.Digest).Validate() != nil {
		p.log.Error("drop malformed publication job", "key", qj.Key, "err", err)
		p.finish(ctx, p.o.Publications, qj)
		return
	}
	image := pl.Upstream + "/" + pl.Repository + "@" + pl.Digest
	if qj.Attempt > maxPublishAttempts {
		p.log.Error("publication abandoned", "image", image, "attempts", qj.Attempt-1)
		p.finish(ctx, p.o.Publications, qj)
		return
	}
	jctx, release := p.holdLease(ctx, p.o.Publications, qj, p.publishLease, image)
	jctx, span := p.startRoot(jctx, spanPublish, pl.TraceParent, attrUpstream.String(pl.Upstream),
		attrRepository.String(pl.Repository), attrDigest.String(pl.Digest), attrAttempt.Int(qj.Attempt))
	revision, err := p.publishCurrent(jctx, pl)
	endSpan(span, err)
	release()
	if err != nil {
		if ctx.Err() == nil {
			p.log.Error("publish verdict and SBOM", "image", image, "attempt", qj.Attempt, "err", err)
		}
		return
	}
	p.finish(ctx, p.o.Publications, qj)
	// A verdict written while the job was held could not queue it again
	// (one job per subject): look once more, after Done.
	if dec, err := p.o.Store.Decision(ctx, pl.Digest, pl.Upstream, pl.Repository); err == nil && dec.Revision != revision {
		p.queuePublication(ctx, pl.Digest, pl.Upstream, pl.Repository)
	}
}

// publishCurrent publishes the stored verdict on a subject and the SBOM of
// its stored result, and returns the revision of the verdict published.
func (p *Pipeline) publishCurrent(ctx context.Context, pl publicationPayload) (uint64, error) {
	dec, err := p.o.Store.Decision(ctx, pl.Digest, pl.Upstream, pl.Repository)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil // nothing decided there (yet): its decision queues it
	}
	if err != nil {
		return 0, err
	}
	rec, err := p.o.Store.Scan(ctx, pl.Digest)
	if errors.Is(err, store.ErrNotFound) {
		return dec.Revision, nil
	}
	if err != nil {
		return 0, err
	}
	if dec.Decision == nil {
		return 0, fmt.Errorf("publish %s in %s/%s: the stored verdict has no decision", pl.Digest, pl.Upstream, pl.Repository)
	}
	return dec.Revision, p.publishArtifacts(ctx, rec, dec, *dec.Decision)
}

// holdLease renews qj's lease in q while the returned context lives; the
// context ends when the lease is lost to another consumer. release stops
// renewing.
func (p *Pipeline) holdLease(ctx context.Context, q store.Queue, qj store.Job, lease time.Duration, what string) (context.Context, func()) {
	return p.keepRenewed(ctx, lease/3, what, func(ctx context.Context) (bool, error) {
		err := q.Extend(ctx, qj, lease)
		if errors.Is(err, store.ErrConflict) {
			return false, nil
		}
		return true, err
	})
}

// keepRenewed calls renew every interval while the returned context
// lives; the context ends when renew reports the hold lost (an error is
// not a loss: the next call may succeed before the hold runs out). stop
// ends the renewing.
func (p *Pipeline) keepRenewed(ctx context.Context, interval time.Duration, what string, renew func(context.Context) (bool, error)) (context.Context, func()) {
	hctx, cancel := context.WithCancel(ctx)
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-hctx.Done():
				return
			case <-t.C:
				if held, err := renew(hctx); err == nil && !held {
					p.log.Warn("work lost to another replica", "work", what)
					cancel()
					return
				}
			}
		}
	}()
	return hctx, func() {
		cancel()
		<-renewed
	}
}

// finish marks qj done in q; a job already handed to another consumer is
// theirs to finish.
func (p *Pipeline) finish(ctx context.Context, q store.Queue, qj store.Job) {
	if err := q.Done(context.WithoutCancel(ctx), qj); err != nil && !errors.Is(err, store.ErrConflict) {
		p.log.Warn("finish job", "key", qj.Key, "err", err)
	}
}
