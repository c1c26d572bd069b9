package store_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/store/storetest"
	"github.com/portcullis/portcullis/test/redisserver"
)

// redisFixture is one real redis-server for a test; each subtest gets its
// own key prefix on it, so subtests start empty.
type redisFixture struct {
	srv  *redisserver.Server
	next atomic.Int64
}

func newRedisFixture(t *testing.T) *redisFixture {
	return &redisFixture{srv: redisserver.Start(t)}
}

func (f *redisFixture) client(t *testing.T) redis.UniversalClient {
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{f.srv.Addr}})
	t.Cleanup(func() { c.Close() })
	return c
}

func (f *redisFixture) prefix() string { return fmt.Sprintf("pc%d:", f.next.Add(1)) }

func TestRedisQueue(t *testing.T) {
	f := newRedisFixture(t)
	storetest.RunQueue(t, func(t *testing.T, opts ...store.QueueOption) (store.Queue, func() store.Queue) {
		prefix := f.prefix()
		var c redis.UniversalClient
		open := func() store.Queue {
			c = f.client(t)
			q, err := store.NewRedisQueue(c, prefix, "eval", opts...)
			if err != nil {
				t.Fatal(err)
			}
			return q
		}
		q := open()
		return q, func() store.Queue {
			// A replica that exits drops its connections; the state stays in Redis.
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			return open()
		}
	})
}

func TestRedisLeases(t *testing.T) {
	f := newRedisFixture(t)
	storetest.RunLeases(t, func(t *testing.T) store.Leases {
		return store.NewRedisLeases(f.client(t), f.prefix())
	})
}

func TestRedisEvents(t *testing.T) {
	f := newRedisFixture(t)
	storetest.RunEvents(t, func(t *testing.T, opts ...store.EventsOption) func() store.Events {
		prefix := f.prefix()
		// Each replica has its own client, as separate processes would.
		return func() store.Events { return store.NewRedisEvents(f.client(t), prefix, opts...) }
	})
}

// After Redis restarts empty, the queue and the events work again without
// a new client: the stream and its group are made again by the next
// enqueue, subscriptions are renewed by go-redis.
func TestRedisRecoversAfterRestart(t *testing.T) {
	f := newRedisFixture(t)
	ctx := t.Context()
	c := f.client(t)
	q, err := store.NewRedisQueue(c, "pc:", "eval")
	if err != nil {
		t.Fatal(err)
	}
	ev := store.NewRedisEvents(c, "pc:")
	ch, cancel, err := ev.Subscribe(ctx, "scanned")
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	if ok, err := q.Enqueue(ctx, "sha256:aa", []byte("1")); err != nil || !ok {
		t.Fatalf("enqueue: %v, %v", ok, err)
	}
	f.srv.Restart()

	// The first command on a dropped connection may fail; a bounded retry
	// stands for the caller's.
	var added bool
	for range 20 {
		if added, err = q.Enqueue(ctx, "sha256:aa", []byte("2")); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || !added {
		t.Fatalf("enqueue after the restart: %v, %v; want added (the restart emptied Redis)", added, err)
	}
	j, err := q.Claim(ctx, "a", time.Minute, 5*time.Second)
	if err != nil || string(j.Payload) != "2" {
		t.Fatalf("claim after the restart: %+v, %v", j, err)
	}
	if err := q.Done(ctx, j); err != nil {
		t.Fatal(err)
	}

	// The subscription comes back: publish until it sees one (bounded).
	for i := range 100 {
		if err := ev.Publish(ctx, "scanned", []byte("after")); err != nil {
			t.Logf("publish %d: %v", i, err)
		}
		select {
		case got, ok := <-ch:
			if !ok || string(got) != "after" {
				t.Fatalf("event after the restart: %q (open %v)", got, ok)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatal("the subscription did not come back after the Redis restart")
}
