package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/store"
)

// QueueOpener makes a fresh, empty queue for one subtest, with opts. It
// also returns reopen, which closes what backs the queue (the state file,
// the Redis client) and opens the same queue again, as a restarted
// process would.
type QueueOpener func(t *testing.T, opts ...store.QueueOption) (q store.Queue, reopen func() store.Queue)

// Bounds of the queue suite: leases short enough to keep it fast, waits
// long enough that a busy machine still finds what it waits for (a wait
// that finds its job returns early; none of these is a timed assertion).
const (
	shortLease = 200 * time.Millisecond
	longLease  = time.Minute
	findWait   = 5 * time.Second
)

// claimWithin runs Claim and fails the test if it does not return within
// bound (a hang, not a slow answer: bound is far above wait).
func claimWithin(t *testing.T, ctx context.Context, q store.Queue, consumer string, lease, wait time.Duration) (store.Job, error) {
	t.Helper()
	type result struct {
		j   store.Job
		err error
	}
	done := make(chan result, 1)
	go func() {
		j, err := q.Claim(ctx, consumer, lease, wait)
		done <- result{j, err}
	}()
	select {
	case r := <-done:
		return r.j, r.err
	case <-time.After(wait + 20*time.Second):
		t.Fatalf("Claim(wait %v) by %s did not return", wait, consumer)
		return store.Job{}, nil
	}
}

func mustClaim(t *testing.T, ctx context.Context, q store.Queue, consumer string, lease time.Duration) store.Job {
	t.Helper()
	j, err := claimWithin(t, ctx, q, consumer, lease, findWait)
	if err != nil {
		t.Fatalf("claim by %s: %v", consumer, err)
	}
	return j
}

func mustEnqueue(t *testing.T, ctx context.Context, q store.Queue, key, payload string) {
	t.Helper()
	added, err := q.Enqueue(ctx, key, []byte(payload))
	if err != nil || !added {
		t.Fatalf("enqueue %s: added %v, %v", key, added, err)
	}
}

func wantLen(t *testing.T, ctx context.Context, q store.Queue, want int64) {
	t.Helper()
	if n, err := q.Len(ctx); err != nil || n != want {
		t.Fatalf("Len: %d, %v; want %d", n, err, want)
	}
}

// RunQueue is the conformance suite of store.Queue.
func RunQueue(t *testing.T, open QueueOpener) {
	ctx := context.Background()
	t.Run("dedupe", func(t *testing.T) {
		q, _ := open(t)
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			added int
		)
		for i := range 10 {
			wg.Go(func() {
				ok, err := q.Enqueue(ctx, "sha256:aa", []byte(fmt.Sprint(i)))
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					added++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if added != 1 {
			t.Fatalf("10 concurrent enqueues of one key added %d jobs, want 1", added)
		}
		wantLen(t, ctx, q, 1)
		j := mustClaim(t, ctx, q, "a", longLease)
		if ok, err := q.Enqueue(ctx, "sha256:aa", nil); err != nil || ok {
			t.Fatalf("enqueue of a claimed key: added %v, %v; want not added", ok, err)
		}
		if err := q.Done(ctx, j); err != nil {
			t.Fatal(err)
		}
		wantLen(t, ctx, q, 0)
		if ok, err := q.Enqueue(ctx, "sha256:aa", []byte("again")); err != nil || !ok {
			t.Fatalf("enqueue after Done: added %v, %v; want added", ok, err)
		}
		j = mustClaim(t, ctx, q, "a", longLease)
		if string(j.Payload) != "again" || j.Attempt != 1 {
			t.Fatalf("job queued again: %+v", j)
		}
	})
	t.Run("oldest first with payloads", func(t *testing.T) {
		q, _ := open(t)
		keys := []string{"sha256:01", "sha256:02", "sha256:03"}
		for _, k := range keys {
			mustEnqueue(t, ctx, q, k, "payload of "+k)
		}
		for _, k := range keys {
			j := mustClaim(t, ctx, q, "a", longLease)
			if j.Key != k || string(j.Payload) != "payload of "+k || j.Attempt != 1 {
				t.Fatalf("got %+v, want %s first", j, k)
			}
		}
		if _, err := claimWithin(t, ctx, q, "a", longLease, 0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("claim on a queue with every job claimed: %v, want ErrNotFound", err)
		}
	})
	t.Run("two consumers never share a job", func(t *testing.T) {
		q, _ := open(t)
		const jobs = 20
		for i := range jobs {
			mustEnqueue(t, ctx, q, fmt.Sprintf("sha256:%02d", i), "")
		}
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			got = map[string]string{}
		)
		for _, consumer := range []string{"a", "b"} {
			wg.Go(func() {
				for range jobs + 1 { // bounded: one more than there are jobs
					j, err := q.Claim(ctx, consumer, longLease, 0)
					if errors.Is(err, store.ErrNotFound) {
						return
					}
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if other, dup := got[j.Key]; dup {
						t.Errorf("%s handed to %s and %s", j.Key, other, consumer)
					}
					got[j.Key] = consumer
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(got) != jobs {
			t.Fatalf("claimed %d distinct jobs, want %d", len(got), jobs)
		}
		wantLen(t, ctx, q, jobs)
	})
	t.Run("a dead consumer's job is finished by another", func(t *testing.T) {
		q, _ := open(t)
		mustEnqueue(t, ctx, q, "sha256:dead", "work")
		dead := mustClaim(t, ctx, q, "a", shortLease)
		if dead.Attempt != 1 {
			t.Fatalf("first claim: attempt %d", dead.Attempt)
		}
		// "a" never extends: after its lease, "b" gets the job.
		j, err := claimWithin(t, ctx, q, "b", longLease, findWait)
		if err != nil {
			t.Fatalf("claim after the holder's lease ran out: %v", err)
		}
		if j.Key != "sha256:dead" || string(j.Payload) != "work" || j.Attempt != 2 {
			t.Fatalf("reclaimed job: %+v, want attempt 2 of sha256:dead", j)
		}
		if err := q.Extend(ctx, dead, longLease); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Extend by the consumer that lost the lease: %v, want ErrConflict", err)
		}
		if err := q.Done(ctx, dead); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Done by the consumer that lost the lease: %v, want ErrConflict", err)
		}
		wantLen(t, ctx, q, 1)
		if err := q.Done(ctx, j); err != nil {
			t.Fatalf("Done by the new holder: %v", err)
		}
		wantLen(t, ctx, q, 0)
		if err := q.Done(ctx, j); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second Done: %v, want ErrConflict", err)
		}
	})
	t.Run("extend keeps the job", func(t *testing.T) {
		q, _ := open(t)
		mustEnqueue(t, ctx, q, "sha256:kept", "")
		j := mustClaim(t, ctx, q, "a", shortLease)
		// Past the first lease: nobody took the job over, so it is still
		// "a"'s to extend; then it is held for a minute.
		time.Sleep(2 * shortLease)
		if err := q.Extend(ctx, j, longLease); err != nil {
			t.Fatalf("Extend: %v", err)
		}
		time.Sleep(2 * shortLease)
		if got, err := claimWithin(t, ctx, q, "b", longLease, shortLease); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("claim of an extended job: %+v, %v; want ErrNotFound", got, err)
		}
		if err := q.Extend(ctx, j, longLease); err != nil {
			t.Fatalf("second Extend: %v", err)
		}
		if err := q.Done(ctx, j); err != nil {
			t.Fatal(err)
		}
		if err := q.Extend(ctx, j, longLease); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Extend of a finished job: %v, want ErrConflict", err)
		}
	})
	t.Run("claim waits at most wait", func(t *testing.T) {
		q, _ := open(t)
		for _, wait := range []time.Duration{0, shortLease} {
			if _, err := claimWithin(t, ctx, q, "a", longLease, wait); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("claim on an empty queue (wait %v): %v, want ErrNotFound", wait, err)
			}
		}
		// A cancelled context ends a long wait.
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(shortLease, cancel)
		if _, err := claimWithin(t, cctx, q, "a", longLease, 10*time.Second); !errors.Is(err, context.Canceled) {
			t.Fatalf("claim with a cancelled context: %v, want context.Canceled", err)
		}
	})
	t.Run("a waiting claim gets a job enqueued meanwhile", func(t *testing.T) {
		q, _ := open(t)
		type result struct {
			j   store.Job
			err error
		}
		got := make(chan result, 1)
		go func() {
			j, err := q.Claim(ctx, "a", longLease, findWait)
			got <- result{j, err}
		}()
		time.Sleep(50 * time.Millisecond) // most likely waiting by now; either way it must get the job
		mustEnqueue(t, ctx, q, "sha256:late", "x")
		select {
		case r := <-got:
			if r.err != nil || r.j.Key != "sha256:late" {
				t.Fatalf("waiting claim: %+v, %v", r.j, r.err)
			}
		case <-time.After(findWait + 20*time.Second):
			t.Fatal("waiting claim did not return")
		}
	})
	t.Run("jobs survive a restart", func(t *testing.T) {
		q, reopen := open(t)
		mustEnqueue(t, ctx, q, "sha256:claimed", "1")
		mustEnqueue(t, ctx, q, "sha256:queued", "2")
		if j := mustClaim(t, ctx, q, "a", shortLease); j.Key != "sha256:claimed" {
			t.Fatalf("claimed %s first", j.Key)
		}
		// The process holding "sha256:claimed" dies with it.
		q = reopen()
		wantLen(t, ctx, q, 2)
		if ok, err := q.Enqueue(ctx, "sha256:queued", nil); err != nil || ok {
			t.Fatalf("dedupe mark after restart: added %v, %v", ok, err)
		}
		seen := map[string]store.Job{}
		for range 2 {
			j := mustClaim(t, ctx, q, "b", longLease)
			seen[j.Key] = j
		}
		if j := seen["sha256:claimed"]; j.Attempt != 2 || string(j.Payload) != "1" {
			t.Fatalf("job claimed before the restart: %+v, want attempt 2", j)
		}
		if j := seen["sha256:queued"]; j.Attempt != 1 || string(j.Payload) != "2" {
			t.Fatalf("job queued before the restart: %+v, want attempt 1", j)
		}
		for _, j := range seen {
			if err := q.Done(ctx, j); err != nil {
				t.Fatal(err)
			}
		}
		wantLen(t, ctx, q, 0)
	})
	t.Run("bounded", func(t *testing.T) {
		q, _ := open(t, store.WithMaxJobs(2))
		mustEnqueue(t, ctx, q, "sha256:1", "")
		mustEnqueue(t, ctx, q, "sha256:2", "")
		if ok, err := q.Enqueue(ctx, "sha256:3", nil); !errors.Is(err, store.ErrQueueFull) || ok {
			t.Fatalf("enqueue on a full queue: %v, %v; want ErrQueueFull", ok, err)
		}
		if ok, err := q.Enqueue(ctx, "sha256:1", nil); err != nil || ok {
			t.Fatalf("enqueue of a queued key on a full queue: %v, %v; want not added, no error", ok, err)
		}
		if err := q.Done(ctx, mustClaim(t, ctx, q, "a", longLease)); err != nil {
			t.Fatal(err)
		}
		mustEnqueue(t, ctx, q, "sha256:3", "")
	})
	t.Run("keys, payloads and consumers are binary-safe", func(t *testing.T) {
		q, _ := open(t)
		all := make([]byte, 256)
		for i := range all {
			all[i] = byte(i)
		}
		for _, tc := range []struct{ key, payload, consumer string }{
			{"k\x00ey{with}|braces", string(all), "a|b{c}"},
			{"ünïcode:" + strings.Repeat("x", store.MaxQueueKeyLen-len("ünïcode:")), "", "1|2"}, // the longest key
			{"1-0", "p", "c"}, // looks like a stream entry id
			{"not utf-8 \xb5\xff", "\xfe", "\xb5"},
		} {
			mustEnqueue(t, ctx, q, tc.key, tc.payload)
			j := mustClaim(t, ctx, q, tc.consumer, longLease)
			if j.Key != tc.key || string(j.Payload) != tc.payload || j.Attempt != 1 {
				t.Fatalf("got key %q payload %q attempt %d, want %q %q 1", j.Key, j.Payload, j.Attempt, tc.key, tc.payload)
			}
			if err := q.Extend(ctx, j, longLease); err != nil {
				t.Fatalf("extend %q: %v", tc.key, err)
			}
			if err := q.Done(ctx, j); err != nil {
				t.Fatalf("done %q: %v", tc.key, err)
			}
		}
		wantLen(t, ctx, q, 0)
	})
	t.Run("bad input is an error", func(t *testing.T) {
		q, _ := open(t)
		for _, tc := range []struct {
			name, key string
			payload   []byte
		}{
			{"empty key", "", nil},
			{"long key", strings.Repeat("k", store.MaxQueueKeyLen+1), nil},
			{"large payload", "sha256:big", make([]byte, store.MaxQueuePayload+1)},
		} {
			if ok, err := q.Enqueue(ctx, tc.key, tc.payload); err == nil || ok {
				t.Errorf("%s: added %v, %v; want an error", tc.name, ok, err)
			}
		}
		wantLen(t, ctx, q, 0)
		for _, tc := range []struct {
			name, consumer string
			lease, wait    time.Duration
		}{
			{"no consumer", "", time.Second, 0},
			{"no lease", "a", 0, 0},
			{"negative wait", "a", time.Second, -time.Second},
		} {
			if _, err := q.Claim(ctx, tc.consumer, tc.lease, tc.wait); err == nil || errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s: %v, want an error about the arguments", tc.name, err)
			}
		}
		// A job this queue never handed out changes nothing.
		mustEnqueue(t, ctx, q, "sha256:x", "")
		for _, j := range []store.Job{{}, {Key: "sha256:x", Attempt: 1}} {
			if err := q.Extend(ctx, j, time.Second); !errors.Is(err, store.ErrConflict) {
				t.Errorf("Extend of %+v: %v, want ErrConflict", j, err)
			}
			if err := q.Done(ctx, j); !errors.Is(err, store.ErrConflict) {
				t.Errorf("Done of %+v: %v, want ErrConflict", j, err)
			}
		}
		wantLen(t, ctx, q, 1)
	})
}
