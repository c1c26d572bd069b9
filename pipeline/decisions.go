package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/store"
)

// Verdicts are decided in the background, never on the pull path: deciding
// can mean verifying signatures and listing tags upstream, and signing what
// is published. A pull that finds no current verdict in its repository
// asks for one and waits as long as its rule's on_unscanned allows.

// decisionJob asks for the verdict on a stored result in one repository.
type decisionJob struct {
	digest, upstream, repo string
	tag                    string // the tag it was pulled by, if any
	// from is the span of the pull that asked first (tracing), linked
	// from the decision's own trace.
	from trace.SpanContext
}

func (j decisionJob) key() string { return j.digest + "\x00" + j.upstream + "/" + j.repo }

// requestDecision queues j unless it is queued already, and returns a
// channel closed when it has been decided (or could not be).
func (p *Pipeline) requestDecision(j decisionJob) (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ch, ok := p.deciding[j.key()]; ok {
		return ch, nil
	}
	if len(p.deciding) >= p.maxQueued {
		return nil, fmt.Errorf("verdict on %s in %s/%s: %w", j.digest, j.upstream, j.repo, ErrQueueFull)
	}
	ch := make(chan struct{})
	p.deciding[j.key()] = ch
	p.decisionQueue = append(p.decisionQueue, j)
	select {
	case p.decisionWake <- struct{}{}:
	default:
	}
	return ch, nil
}

func (p *Pipeline) popDecision() (decisionJob, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.decisionQueue) == 0 {
		return decisionJob{}, false
	}
	j := p.decisionQueue[0]
	p.decisionQueue = p.decisionQueue[1:]
	return j, true
}

func (p *Pipeline) decisionDone(j decisionJob) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ch, ok := p.deciding[j.key()]; ok {
		close(ch)
		delete(p.deciding, j.key())
	}
}

// decide runs queued decision jobs until ctx ends.
func (p *Pipeline) decideWork(ctx context.Context) {
	for {
		j, ok := p.popDecision()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-p.decisionWake:
			case <-time.After(time.Second):
			}
			continue
		}
		if err := p.decideJob(ctx, j); err != nil && ctx.Err() == nil {
			p.log.Error("decide verdict", "image", j.upstream+"/"+j.repo+"@"+j.digest, "err", err)
		}
		p.decisionDone(j)
	}
}

func (p *Pipeline) decideJob(ctx context.Context, j decisionJob) (err error) {
	ctx, span := p.startRootLinked(ctx, spanDecide, j.from, attrUpstream.String(j.upstream),
		attrRepository.String(j.repo), attrDigest.String(j.digest))
	defer func() { endSpan(span, err) }()
	rec, err := store.ScanWithoutInventory(ctx, p.o.Store, j.digest)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if rec.State == store.ScanPending {
		return nil // decided when its scan ends
	}
	_, err = p.decideIn(ctx, rec, j.upstream, j.repo, j.tag)
	return err
}

// awaitDecision waits for a requested decision, at most max.
func awaitDecision(ctx context.Context, done <-chan struct{}, max time.Duration) bool {
	if max <= 0 {
		return false
	}
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}
