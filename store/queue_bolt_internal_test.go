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
