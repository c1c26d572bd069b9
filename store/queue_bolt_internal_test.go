package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A damaged job record is dropped with a clear error; the queue goes on
// with the next job and the damaged job's key can be queued again.
func TestBoltQueueDropsDamagedJob(t *testing.T) {
	b, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	q, err := b.Queue("eval")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, k := range []string{"sha256:damaged", "sha256:fine"} {
		if ok, err := q.Enqueue(ctx, k, nil); err != nil || !ok {
			t.Fatalf("enqueue %s: %v, %v", k, ok, err)
		}
	}
	err = b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(q.buckets.jobs).Put(seqKey(1), []byte("{not json"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Claim(ctx, "a", time.Minute, 0); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("claim of a damaged job: %v, want an error naming it", err)
	}
	j, err := q.Claim(ctx, "a", time.Minute, 0)
	if err != nil || j.Key != "sha256:fine" {
		t.Fatalf("claim after the damaged job: %+v, %v", j, err)
	}
	if n, err := q.Len(ctx); err != nil || n != 1 {
		t.Fatalf("Len: %d, %v; want 1", n, err)
	}
	if ok, err := q.Enqueue(ctx, "sha256:damaged", nil); err != nil || !ok {
		t.Fatalf("enqueue of the dropped job's key: %v, %v; want added", ok, err)
	}
}

// Queueing a key that is queued already writes nothing to the state file:
// a decision queues its publication before and after its write, and a
// commit that changed nothing still wrote and synced a meta page.
func TestBoltQueueEnqueueOfQueuedKeyWritesNothing(t *testing.T) {
	b, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	q, err := b.Queue("publications")
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if ok, err := q.Enqueue(ctx, "docker.io/library/alpine@sha256:aa", []byte("1")); err != nil || !ok {
		t.Fatalf("first enqueue: %v, %v", ok, err)
	}
	if _, err := q.Claim(ctx, "a", time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	for _, state := range []string{"claimed", "queued"} {
		if state == "queued" {
			if ok, err := q.Enqueue(ctx, "docker.io/library/alpine@sha256:bb", []byte("2")); err != nil || !ok {
				t.Fatalf("enqueue: %v, %v", ok, err)
			}
		}
		key := map[string]string{"claimed": "docker.io/library/alpine@sha256:aa", "queued": "docker.io/library/alpine@sha256:bb"}[state]
		before := b.db.Stats()
		writes := before.TxStats.GetWrite()
		if ok, err := q.Enqueue(ctx, key, []byte("again")); err != nil || ok {
			t.Fatalf("enqueue of a %s key: added %v, %v; want not added, no error", state, ok, err)
		}
		after := b.db.Stats()
		if got := after.TxStats.GetWrite(); got != writes {
			t.Fatalf("enqueue of a %s key wrote %d pages, want none", state, got-writes)
		}
	}
	if n, err := q.Len(ctx); err != nil || n != 2 {
		t.Fatalf("Len: %d, %v; want 2", n, err)
	}
}
