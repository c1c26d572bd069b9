package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Queue is work per key (a manifest digest), deduplicated: a key that is
// queued or being worked on is not queued again. A claimed job is held
// under a lease; a job whose lease ran out (its consumer died or hangs) is
// handed out again, so every job is finished at least once.
type Queue interface {
	// Enqueue queues payload under key unless key is queued or claimed
	// already (added false). A full queue answers ErrQueueFull.
	Enqueue(ctx context.Context, key string, payload []byte) (added bool, err error)
	// Claim hands the next job to consumer for lease: a job whose lease ran
	// out first, else the oldest queued one. It waits up to wait for one;
	// none: ErrNotFound.
	Claim(ctx context.Context, consumer string, lease, wait time.Duration) (Job, error)
	// Extend renews j's lease while working on it; ErrConflict if the lease
	// was lost (the job was handed to another consumer, or finished).
	Extend(ctx context.Context, j Job, lease time.Duration) error
	// Done removes j and its dedupe mark, so its key can be queued again;
	// ErrConflict if j's lease was lost to another consumer (who finishes
	// it instead).
	Done(ctx context.Context, j Job) error
	// Len counts the jobs not done yet (queued or claimed).
	Len(ctx context.Context) (int64, error)
}

// Job is one claimed piece of work.
type Job struct {
	Key     string
	Payload []byte
	// Attempt counts the times the job was handed out: 1 on the first
	// claim, 2 after a consumer lost its lease, and so on.
	Attempt int
	// id names the job inside its queue; consumer is who claimed it. With
	// Attempt they make the claim's identity: a stale claim is refused.
	id       string
	consumer string
}

// Leases are locks with a time to live, e.g. one download per blob
// cluster-wide. A holder renews its lease while working; a crashed holder's
// lease runs out and another may take it.
type Leases interface {
	// Acquire takes key for owner unless someone else holds it.
	Acquire(ctx context.Context, key, owner string, ttl time.Duration) (bool, error)
	// Renew extends owner's lease on key; false: it is no longer owner's.
	Renew(ctx context.Context, key, owner string, ttl time.Duration) (bool, error)
	// Release gives key up if owner holds it; otherwise it does nothing.
	Release(ctx context.Context, key, owner string) error
}

// Events is publish/subscribe: every subscriber sees every event published
// on its topic after Subscribe returned, once, in order, unless it falls
// behind by more than its buffer (then it misses events rather than
// stalling the publishers).
type Events interface {
	Publish(ctx context.Context, topic string, payload []byte) error
	// Subscribe returns the events of topic and a func that ends the
	// subscription; the channel is closed when the subscription ends (that
	// func, or ctx done).
	Subscribe(ctx context.Context, topic string) (<-chan []byte, func(), error)
}

// ErrQueueFull means a queue holds its maximum number of jobs.
var ErrQueueFull = errors.New("queue is full")

// Bounds on what callers hand the queue, leases and events: keys are
// digests or names, payloads small descriptions of work, not content.
const (
	MaxQueueKeyLen   = 1024
	MaxQueuePayload  = 64 << 10
	MaxEventPayload  = 64 << 10
	MaxLeaseKeyLen   = 1024
	MaxTopicLen      = 256
	DefaultMaxJobs   = 1 << 20
	maxConsumerLen   = 256
	minLeaseDuration = time.Millisecond
	// maxClaimPoll bounds one sleep of a waiting Claim, so a job that
	// became claimable without a notification (another process's lease ran
	// out, a queue opened twice) is found without waiting out the whole wait.
	maxClaimPoll = time.Second
)

// QueueOption tunes a queue.
type QueueOption func(*queueConfig)

type queueConfig struct {
	maxJobs int64
}

// WithMaxJobs bounds the jobs a queue holds (queued and claimed); Enqueue
// on a full queue answers ErrQueueFull.
func WithMaxJobs(n int64) QueueOption {
	return func(c *queueConfig) {
		if n > 0 {
			c.maxJobs = n
		}
	}
}

func newQueueConfig(opts []QueueOption) queueConfig {
	c := queueConfig{maxJobs: DefaultMaxJobs}
	for _, o := range opts {
		o(&c)
	}
	return c
}

func checkEnqueue(key string, payload []byte) error {
	if key == "" || len(key) > MaxQueueKeyLen {
		return fmt.Errorf("queue key of %d bytes: want 1 to %d", len(key), MaxQueueKeyLen)
	}
	if len(payload) > MaxQueuePayload {
		return fmt.Errorf("queue payload of %d bytes for %s: at most %d", len(payload), key, MaxQueuePayload)
	}
	return nil
}

func checkClaim(consumer string, lease, wait time.Duration) error {
	if consumer == "" || len(consumer) > maxConsumerLen {
		return fmt.Errorf("consumer name of %d bytes: want 1 to %d", len(consumer), maxConsumerLen)
	}
	if lease < minLeaseDuration {
		return fmt.Errorf("lease %v: at least %v", lease, minLeaseDuration)
	}
	if wait < 0 {
		return fmt.Errorf("wait %v: negative", wait)
	}
	return nil
}

func checkLease(key, owner string, ttl time.Duration) error {
	if key == "" || len(key) > MaxLeaseKeyLen {
		return fmt.Errorf("lease key of %d bytes: want 1 to %d", len(key), MaxLeaseKeyLen)
	}
	if owner == "" || len(owner) > maxConsumerLen {
		return fmt.Errorf("lease owner of %d bytes: want 1 to %d", len(owner), maxConsumerLen)
	}
	if ttl < minLeaseDuration {
		return fmt.Errorf("lease ttl %v: at least %v", ttl, minLeaseDuration)
	}
	return nil
}

func checkTopic(topic string) error {
	if topic == "" || len(topic) > MaxTopicLen {
		return fmt.Errorf("event topic of %d bytes: want 1 to %d", len(topic), MaxTopicLen)
	}
	return nil
}

// claimPoll is how long a waiting Claim sleeps before it looks again:
// until the earliest lease runs out (next, zero: none), at most
// maxClaimPoll and what is left of its wait.
func claimPoll(left, next time.Duration, haveNext bool) time.Duration {
	d := min(left, maxClaimPoll)
	if haveNext {
		d = min(d, max(next, time.Millisecond))
	}
	return max(d, time.Millisecond)
}
