package store_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/store/storetest"
)

func TestBoltQueue(t *testing.T) {
	storetest.RunQueue(t, func(t *testing.T, opts ...store.QueueOption) (store.Queue, func() store.Queue) {
		path := filepath.Join(t.TempDir(), "state.db")
		var b *store.Bolt
		open := func() store.Queue {
			var err error
			if b, err = store.OpenBolt(path); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			q, err := b.Queue("eval", opts...)
			if err != nil {
				t.Fatal(err)
			}
			return q
		}
		q := open()
		return q, func() store.Queue {
			// What a process exit does to the state file.
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			return open()
		}
	})
}

func TestLocalLeases(t *testing.T) {
	storetest.RunLeases(t, func(*testing.T) store.Leases { return store.NewLocalLeases(0) })
}

func TestLocalEvents(t *testing.T) {
	storetest.RunEvents(t, func(_ *testing.T, opts ...store.EventsOption) func() store.Events {
		e := store.NewLocalEvents(opts...)
		return func() store.Events { return e } // one process: every replica is this one
	})
}

// Queues of different names in one state file are independent.
func TestBoltQueuesByName(t *testing.T) {
	b, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()
	eval, err := b.Queue("eval")
	if err != nil {
		t.Fatal(err)
	}
	publish, err := b.Queue("publish")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []*store.BoltQueue{eval, publish} {
		if ok, err := q.Enqueue(ctx, "sha256:aa", nil); err != nil || !ok {
			t.Fatalf("enqueue: %v, %v", ok, err)
		}
	}
	if n, err := publish.Len(ctx); err != nil || n != 1 {
		t.Fatalf("Len: %d, %v", n, err)
	}
	for _, name := range []string{"", string(make([]byte, 65))} {
		if _, err := b.Queue(name); err == nil {
			t.Errorf("queue name of %d bytes: want an error", len(name))
		}
	}
}

// A full LocalLeases forgets expired leases before it refuses a new one.
func TestLocalLeasesBounded(t *testing.T) {
	ctx := t.Context()
	l := store.NewLocalLeases(2)
	acquire := func(key string, ttl time.Duration) error {
		ok, err := l.Acquire(ctx, key, "o", ttl)
		if err == nil && !ok {
			t.Fatalf("acquire %s: held", key)
		}
		return err
	}
	for _, k := range []string{"a", "b"} {
		if err := acquire(k, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(5 * time.Millisecond)
	if err := acquire("c", time.Minute); err != nil {
		t.Fatalf("acquire with only expired leases held: %v", err)
	}
	if err := acquire("d", time.Minute); err != nil {
		t.Fatalf("acquire with one live lease held: %v", err)
	}
	if err := acquire("e", time.Minute); !errors.Is(err, store.ErrTooManyLeases) {
		t.Fatalf("acquire with two live leases held: %v, want ErrTooManyLeases", err)
	}
}

// FuzzBoltQueue: whatever key and payload a caller hands the queue (a
// digest from a client's request path) is refused with an error or comes
// back exactly, and leaves the queue as it found it.
func FuzzBoltQueue(f *testing.F) {
	f.Add("sha256:aa", []byte("payload"), "worker-1")
	f.Add("", []byte(nil), "")
	f.Add("k\x00{}|", []byte{0, 255}, "a|b")
	b, err := store.OpenBolt(filepath.Join(f.TempDir(), "state.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer b.Close()
	var runs atomic.Int64
	f.Fuzz(func(t *testing.T, key string, payload []byte, consumer string) {
		ctx := t.Context()
		// A queue per input: a failing input leaves nothing for the next.
		q, err := b.Queue(fmt.Sprint("fuzz", runs.Add(1)))
		if err != nil {
			t.Fatal(err)
		}
		added, err := q.Enqueue(ctx, key, payload)
		if err != nil {
			if added {
				t.Fatal("added and an error")
			}
			return
		}
		if !added {
			t.Fatalf("%q not added to an empty queue", key)
		}
		j, err := q.Claim(ctx, consumer, time.Minute, 0)
		if err != nil {
			// Only the consumer name can be refused here; the job stays.
			if j, err = q.Claim(ctx, "fuzzer", time.Minute, 0); err != nil {
				t.Fatalf("claim: %v", err)
			}
		}
		if j.Key != key || string(j.Payload) != string(payload) || j.Attempt != 1 {
			t.Fatalf("got %q %q attempt %d, want %q %q", j.Key, j.Payload, j.Attempt, key, payload)
		}
		if err := q.Done(ctx, j); err != nil {
			t.Fatal(err)
		}
		if n, err := q.Len(ctx); err != nil || n != 0 {
			t.Fatalf("Len after Done: %d, %v", n, err)
		}
	})
}
