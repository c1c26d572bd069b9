package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BoltQueue is the embedded Queue: jobs persisted in the state file, so a
// queued job survives a restart and a job claimed by a process that died
// is handed out again once its lease runs out. Lease deadlines are wall
// clock times (they must outlive the process).
//
// Per queue name, five buckets (created on first write):
//
//	queue/<name>/jobs    seq → boltJob (JSON)
//	queue/<name>/ready   seq → nil: queued, not claimed, oldest first
//	queue/<name>/leases  deadline (unix ns) ‖ seq → nil: claimed, earliest deadline first
//	queue/<name>/keys    key → seq: the dedupe marks
//	queue/<name>/meta    "len" → jobs not done (uint64), for Len and the bound
type BoltQueue struct {
	db      *bolt.DB
	name    string
	buckets boltQueueBuckets
	cfg     queueConfig
	// Waiting claims in this process sleep on wake; Enqueue closes it and
	// makes a new one, waking them all.
	mu   sync.Mutex
	wake chan struct{}
}

type boltQueueBuckets struct{ jobs, ready, leases, keys, meta []byte }

// boltJob keeps key and consumer as bytes: a JSON string would replace
// bytes that are not UTF-8, and the job would come back under another key
// (or its holder would no longer match).
type boltJob struct {
	Key      []byte `json:"key"`
	Payload  []byte `json:"payload,omitempty"`
	Attempt  int    `json:"attempt"`
	Consumer []byte `json:"consumer,omitempty"`
	Deadline int64  `json:"deadline,omitempty"` // unix ns; 0: not claimed
}

const maxQueueNameLen = 64

var lenKey = []byte("len")

// Queue returns the persisted queue called name. Open each name once per
// process and share it: waiting claims are woken by enqueues through the
// same BoltQueue (others find new jobs within a second).
func (b *Bolt) Queue(name string, opts ...QueueOption) (*BoltQueue, error) {
	if name == "" || len(name) > maxQueueNameLen {
		return nil, fmt.Errorf("queue name of %d bytes: want 1 to %d", len(name), maxQueueNameLen)
	}
	p := "queue/" + name + "/"
	return &BoltQueue{
		db:   b.db,
		name: name,
		buckets: boltQueueBuckets{
			jobs: []byte(p + "jobs"), ready: []byte(p + "ready"), leases: []byte(p + "leases"),
			keys: []byte(p + "keys"), meta: []byte(p + "meta"),
		},
		cfg:  newQueueConfig(opts),
		wake: make(chan struct{}),
	}, nil
}

// boltQueueTx is one transaction's view of the queue's buckets.
type boltQueueTx struct{ jobs, ready, leases, keys, meta *bolt.Bucket }

func (q *BoltQueue) update(fn func(t boltQueueTx) error) error {
	return q.db.Update(func(tx *bolt.Tx) error {
		var t boltQueueTx
		for _, b := range []struct {
			name []byte
			dst  **bolt.Bucket
		}{{q.buckets.jobs, &t.jobs}, {q.buckets.ready, &t.ready}, {q.buckets.leases, &t.leases}, {q.buckets.keys, &t.keys}, {q.buckets.meta, &t.meta}} {
			bk, err := tx.CreateBucketIfNotExists(b.name)
			if err != nil {
				return err
			}
			*b.dst = bk
		}
		return fn(t)
	})
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

func leaseKey(deadline int64, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, uint64(deadline)), seq)
}

func (t boltQueueTx) count() uint64 {
	if v := t.meta.Get(lenKey); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func (t boltQueueTx) setCount(n uint64) error {
	return t.meta.Put(lenKey, binary.BigEndian.AppendUint64(nil, n))
}

func (t boltQueueTx) job(seq uint64) (boltJob, error) {
	var j boltJob
	v := t.jobs.Get(seqKey(seq))
	if v == nil {
		return j, ErrNotFound
	}
	if err := json.Unmarshal(v, &j); err != nil {
		return j, fmt.Errorf("job %d: %w", seq, err)
	}
	return j, nil
}

func (t boltQueueTx) putJob(seq uint64, j boltJob) error {
	v, err := json.Marshal(j)
	if err != nil {
		return err
	}
	return t.jobs.Put(seqKey(seq), v)
}

// errAlreadyQueued ends, without a commit, an Enqueue of a key that is
// queued already.
var errAlreadyQueued = errors.New("already queued")

// Enqueue implements Queue.
func (q *BoltQueue) Enqueue(_ context.Context, key string, payload []byte) (bool, error) {
	if err := checkEnqueue(key, payload); err != nil {
		return false, fmt.Errorf("enqueue on %s: %w", q.name, err)
	}
	added := false
	err := q.update(func(t boltQueueTx) error {
		if t.keys.Get([]byte(key)) != nil {
			// Rolled back, not committed: a bbolt commit writes and syncs
			// its meta page even when nothing changed, and a decision
			// queues its publication twice (before and after the write).
			return errAlreadyQueued
		}
		n := t.count()
		if n >= uint64(q.cfg.maxJobs) {
			return fmt.Errorf("%d jobs: %w", n, ErrQueueFull)
		}
		seq, err := t.jobs.NextSequence()
		if err != nil {
			return err
		}
		if err := t.putJob(seq, boltJob{Key: []byte(key), Payload: payload}); err != nil {
			return err
		}
		if err := t.ready.Put(seqKey(seq), nil); err != nil {
			return err
		}
		if err := t.keys.Put([]byte(key), seqKey(seq)); err != nil {
			return err
		}
		added = true
		return t.setCount(n + 1)
	})
	if errors.Is(err, errAlreadyQueued) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("enqueue %s on %s: %w", key, q.name, err)
	}
	if added {
		q.mu.Lock()
		close(q.wake)
		q.wake = make(chan struct{})
		q.mu.Unlock()
	}
	return added, nil
}

// Claim implements Queue.
func (q *BoltQueue) Claim(ctx context.Context, consumer string, lease, wait time.Duration) (Job, error) {
	if err := checkClaim(consumer, lease, wait); err != nil {
		return Job{}, fmt.Errorf("claim on %s: %w", q.name, err)
	}
	end := time.Now().Add(wait)
	for {
		// Take the wake channel before looking, so an enqueue after the
		// look still wakes this claim.
		q.mu.Lock()
		wake := q.wake
		q.mu.Unlock()
		j, next, haveNext, err := q.claimOnce(consumer, lease)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return j, err
		}
		left := time.Until(end)
		if left <= 0 {
			return Job{}, ErrNotFound
		}
		timer := time.NewTimer(claimPoll(left, next, haveNext))
		select {
		case <-ctx.Done():
			timer.Stop()
			return Job{}, fmt.Errorf("claim on %s: %w", q.name, ctx.Err())
		case <-wake:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// claimOnce hands out a job whose lease ran out, else the oldest queued
// one; none: ErrNotFound and how long until the earliest lease runs out.
func (q *BoltQueue) claimOnce(consumer string, lease time.Duration) (Job, time.Duration, bool, error) {
	var (
		claimed  Job
		next     time.Duration
		haveNext bool
		broken   error
	)
	err := q.update(func(t boltQueueTx) error {
		now := time.Now().UnixNano()
		var seq uint64
		if k, _ := t.leases.Cursor().First(); k != nil {
			if len(k) != 16 {
				return fmt.Errorf("lease entry of %d bytes", len(k))
			}
			if deadline := int64(binary.BigEndian.Uint64(k)); deadline <= now {
				seq = binary.BigEndian.Uint64(k[8:])
				if err := t.leases.Delete(k); err != nil {
					return err
				}
			} else {
				next, haveNext = time.Duration(deadline-now), true
			}
		}
		if seq == 0 {
			k, _ := t.ready.Cursor().First()
			if k == nil {
				return ErrNotFound
			}
			if len(k) != 8 {
				return fmt.Errorf("ready entry of %d bytes", len(k))
			}
			seq = binary.BigEndian.Uint64(k)
			if err := t.ready.Delete(k); err != nil {
				return err
			}
		}
		j, err := t.job(seq)
		if err != nil {
			// Damaged state (the index names a job that is gone or cannot
			// be read): drop it, so the queue does not stop on it, and say
			// so once.
			broken = fmt.Errorf("dropped damaged job %d: %w", seq, err)
			return t.drop(seq)
		}
		j.Attempt++
		j.Consumer = []byte(consumer)
		j.Deadline = now + int64(lease)
		if err := t.leases.Put(leaseKey(j.Deadline, seq), nil); err != nil {
			return err
		}
		if err := t.putJob(seq, j); err != nil {
			return err
		}
		claimed = Job{Key: string(j.Key), Payload: j.Payload, Attempt: j.Attempt, id: strconv.FormatUint(seq, 10), consumer: consumer}
		return nil
	})
	if err == nil && broken != nil {
		err = broken
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Job{}, 0, false, fmt.Errorf("claim on %s: %w", q.name, err)
	}
	return claimed, next, haveNext, err
}

// drop removes what is left of a damaged job: its record and its dedupe
// mark (found by a walk of the marks, bounded by the queue's size: this
// only runs on damaged state).
func (t boltQueueTx) drop(seq uint64) error {
	if err := t.jobs.Delete(seqKey(seq)); err != nil {
		return err
	}
	want := seqKey(seq)
	c := t.keys.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if string(v) == string(want) {
			if err := c.Delete(); err != nil {
				return err
			}
			if n := t.count(); n > 0 {
				return t.setCount(n - 1)
			}
			return nil
		}
	}
	return nil
}

// held loads j's record if j's claim still holds it; else ErrConflict.
func (q *BoltQueue) held(t boltQueueTx, j Job) (uint64, boltJob, error) {
	seq, err := strconv.ParseUint(j.id, 10, 64)
	if err != nil || seq == 0 {
		return 0, boltJob{}, fmt.Errorf("job %q of %s is not from this queue: %w", j.Key, q.name, ErrConflict)
	}
	rec, err := t.job(seq)
	if errors.Is(err, ErrNotFound) {
		return 0, boltJob{}, fmt.Errorf("job %s is finished: %w", j.Key, ErrConflict)
	}
	if err != nil {
		return 0, boltJob{}, err
	}
	if string(rec.Consumer) != j.consumer || rec.Attempt != j.Attempt || rec.Deadline == 0 {
		return 0, boltJob{}, fmt.Errorf("job %q is held by %q (attempt %d), not %q (attempt %d): %w",
			j.Key, rec.Consumer, rec.Attempt, j.consumer, j.Attempt, ErrConflict)
	}
	return seq, rec, nil
}

// Extend implements Queue. A claim whose lease ran out but that nobody
// took over yet is still its holder's, and can be extended.
func (q *BoltQueue) Extend(_ context.Context, j Job, lease time.Duration) error {
	if lease < minLeaseDuration {
		return fmt.Errorf("extend %s on %s: lease %v: at least %v", j.Key, q.name, lease, minLeaseDuration)
	}
	err := q.update(func(t boltQueueTx) error {
		seq, rec, err := q.held(t, j)
		if err != nil {
			return err
		}
		if err := t.leases.Delete(leaseKey(rec.Deadline, seq)); err != nil {
			return err
		}
		rec.Deadline = time.Now().UnixNano() + int64(lease)
		if err := t.leases.Put(leaseKey(rec.Deadline, seq), nil); err != nil {
			return err
		}
		return t.putJob(seq, rec)
	})
	if err != nil {
		return fmt.Errorf("extend %s on %s: %w", j.Key, q.name, err)
	}
	return nil
}

// Done implements Queue.
func (q *BoltQueue) Done(_ context.Context, j Job) error {
	err := q.update(func(t boltQueueTx) error {
		seq, rec, err := q.held(t, j)
		if err != nil {
			return err
		}
		if err := t.leases.Delete(leaseKey(rec.Deadline, seq)); err != nil {
			return err
		}
		if err := t.jobs.Delete(seqKey(seq)); err != nil {
			return err
		}
		if v := t.keys.Get(rec.Key); v != nil && len(v) == 8 && binary.BigEndian.Uint64(v) == seq {
			if err := t.keys.Delete(rec.Key); err != nil {
				return err
			}
		}
		if n := t.count(); n > 0 {
			return t.setCount(n - 1)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("finish %s on %s: %w", j.Key, q.name, err)
	}
	return nil
}

// Len implements Queue.
func (q *BoltQueue) Len(_ context.Context) (int64, error) {
	var n uint64
	err := q.db.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(q.buckets.meta); meta != nil {
			if v := meta.Get(lenKey); len(v) == 8 {
				n = binary.BigEndian.Uint64(v)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("length of %s: %w", q.name, err)
	}
	return int64(n), nil
}
