package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/store"
)

// RunLeases is the conformance suite of store.Leases; newLeases makes a
// fresh set for each subtest.
func RunLeases(t *testing.T, newLeases func(t *testing.T) store.Leases) {
	ctx := context.Background()
	t.Run("exclusive", func(t *testing.T) {
		l := newLeases(t)
		var (
			wg  sync.WaitGroup
			won atomic.Int32
		)
		for i := range 10 {
			wg.Go(func() {
				ok, err := l.Acquire(ctx, "blob:sha256:aa", fmt.Sprintf("replica-%d", i), time.Minute)
				if err != nil {
					t.Error(err)
				}
				if ok {
					won.Add(1)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("10 concurrent Acquire of one key: %d won, want 1", won.Load())
		}
		if ok, err := l.Acquire(ctx, "blob:sha256:bb", "replica-0", time.Minute); err != nil || !ok {
			t.Fatalf("another key: %v, %v", ok, err)
		}
	})
	t.Run("renew and release only by the owner", func(t *testing.T) {
		l := newLeases(t)
		if ok, err := l.Acquire(ctx, "k", "a", time.Minute); err != nil || !ok {
			t.Fatalf("acquire: %v, %v", ok, err)
		}
		if ok, err := l.Acquire(ctx, "k", "a", time.Minute); err != nil || ok {
			t.Fatalf("acquire of a held lease by its own owner: %v, %v; want false (renew instead)", ok, err)
		}
		if ok, err := l.Renew(ctx, "k", "b", time.Minute); err != nil || ok {
			t.Fatalf("renew by another: %v, %v; want false", ok, err)
		}
		if ok, err := l.Renew(ctx, "k", "a", time.Minute); err != nil || !ok {
			t.Fatalf("renew by the owner: %v, %v; want true", ok, err)
		}
		if err := l.Release(ctx, "k", "b"); err != nil {
			t.Fatal(err)
		}
		if ok, err := l.Acquire(ctx, "k", "b", time.Minute); err != nil || ok {
			t.Fatalf("acquire after another's release: %v, %v; want still held", ok, err)
		}
		if err := l.Release(ctx, "k", "a"); err != nil {
			t.Fatal(err)
		}
		if ok, err := l.Renew(ctx, "k", "a", time.Minute); err != nil || ok {
			t.Fatalf("renew after release: %v, %v; want false", ok, err)
		}
		if ok, err := l.Acquire(ctx, "k", "b", time.Minute); err != nil || !ok {
			t.Fatalf("acquire after the owner's release: %v, %v; want true", ok, err)
		}
	})
	t.Run("expiry lets another acquire", func(t *testing.T) {
		l := newLeases(t)
		if ok, err := l.Acquire(ctx, "k", "a", shortLease); err != nil || !ok {
			t.Fatalf("acquire: %v, %v", ok, err)
		}
		// "a" crashed: within a bounded number of tries "b" gets it.
		got := false
		for range 100 {
			ok, err := l.Acquire(ctx, "k", "b", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if got = ok; got {
				break
			}
			time.Sleep(shortLease / 4)
		}
		if !got {
			t.Fatal("an expired lease was never acquired by another")
		}
		if ok, err := l.Renew(ctx, "k", "a", time.Minute); err != nil || ok {
			t.Fatalf("renew by the expired owner: %v, %v; want false", ok, err)
		}
		if err := l.Release(ctx, "k", "a"); err != nil {
			t.Fatal(err)
		}
		if ok, err := l.Renew(ctx, "k", "b", time.Minute); err != nil || !ok {
			t.Fatalf("the new owner's lease after the old owner's release: %v, %v; want held", ok, err)
		}
	})
	t.Run("bad input is an error", func(t *testing.T) {
		l := newLeases(t)
		for _, tc := range []struct {
			name, key, owner string
			ttl              time.Duration
		}{
			{"empty key", "", "a", time.Second},
			{"long key", strings.Repeat("k", store.MaxLeaseKeyLen+1), "a", time.Second},
			{"no owner", "k", "", time.Second},
			{"no ttl", "k", "a", 0},
			{"negative ttl", "k", "a", -time.Second},
		} {
			if ok, err := l.Acquire(ctx, tc.key, tc.owner, tc.ttl); err == nil || ok {
				t.Errorf("Acquire with %s: %v, %v; want an error", tc.name, ok, err)
			}
			if ok, err := l.Renew(ctx, tc.key, tc.owner, tc.ttl); err == nil || ok {
				t.Errorf("Renew with %s: %v, %v; want an error", tc.name, ok, err)
			}
		}
	})
}
