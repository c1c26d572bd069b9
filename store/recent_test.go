package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/test/redisserver"
)

// byTime lists every verdict of s newest first, as "digest where".
func byTime(t *testing.T, s store.DecisionStore) []string {
	t.Helper()
	var got []string
	err := s.DecisionsByTime(context.Background(), store.TimeCursor{}, func(d store.DecisionRecord) bool {
		got = append(got, d.Digest+" "+d.Upstream+"/"+d.Repository)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// A state file written before the index by time existed: opening it
// indexes every verdict once, over several transactions, and the index
// then follows new writes.
func TestBoltBuildsTheIndexByTime(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	// What an older version left: verdicts, and no index.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2500 // more than two batches of the build
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var want []string
	err = db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket([]byte("recent")); err != nil {
			return err
		}
		decisions := tx.Bucket([]byte("decisions"))
		for i := range n {
			r := store.DecisionRecord{Digest: fmt.Sprintf("sha256:%064x", i), Upstream: "docker.io", Repository: "a/b",
				Revision: 1, Verdict: "allow", UpdatedAt: base.Add(time.Duration(i) * time.Second)}
			v, _ := json.Marshal(r)
			if err := decisions.Put([]byte(r.Digest+"\x00docker.io/a/b"), v); err != nil {
				return err
			}
			want = append(want, r.Digest+" docker.io/a/b")
		}
		return nil
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(want)
	st, err = store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := byTime(t, st); !slices.Equal(got, want) {
		t.Fatalf("after the build: %d verdicts listed, want %d newest first", len(got), len(want))
	}
	r, err := st.Decision(ctx, fmt.Sprintf("sha256:%064x", 0), "docker.io", "a/b")
	if err != nil {
		t.Fatal(err)
	}
	r.UpdatedAt = base.Add(time.Hour * 24)
	if err := st.PutDecision(ctx, &r); err != nil {
		t.Fatal(err)
	}
	got := byTime(t, st)
	if len(got) != n || got[0] != want[n-1] {
		t.Fatalf("after a write: %d listed, first %q; want %d, first %q", len(got), got[0], n, want[n-1])
	}
}

// Redis verdicts written before the index by time existed are indexed by
// the first walk, once (the marker key), and each is listed once even
// when an entry was left behind by a write cut short.
func TestRedisBuildsTheIndexByTime(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	s, err := store.NewRedis(c, "old")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const n = 230 // more than two batches
	var want []string
	for i := range n {
		r := store.DecisionRecord{Digest: fmt.Sprintf("sha256:%064x", i), Upstream: "docker.io", Repository: "a/b",
			Verdict: "allow", UpdatedAt: base.Add(time.Duration(i) * time.Second)}
		if err := s.PutDecision(ctx, &r); err != nil {
			t.Fatal(err)
		}
		want = append(want, r.Digest+" docker.io/a/b")
		// What an older version wrote: no field "recent" in the record.
		if err := c.HDel(ctx, "old:{docker.io/a/b}:decision:"+r.Digest, "recent").Err(); err != nil {
			t.Fatal(err)
		}
	}
	slices.Reverse(want)
	// ... and no index.
	if err := c.Del(ctx, "old:recent").Err(); err != nil {
		t.Fatal(err)
	}
	// A fresh store on the same keys (another replica, after an upgrade).
	s2, err := store.NewRedis(redis.NewClient(&redis.Options{Addr: srv.Addr}), "old")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := byTime(t, s2); !slices.Equal(got, want) {
		t.Fatalf("after the build: %d listed, want %d newest first", len(got), len(want))
	}
	if built, err := c.Exists(ctx, "old:recent-built").Result(); err != nil || built != 1 {
		t.Fatalf("marker key: %d, %v", built, err)
	}
	// A legacy record written again moves, and leaves no second entry:
	// the build gave it its field "recent".
	r, err := s2.Decision(ctx, fmt.Sprintf("sha256:%064x", 0), "docker.io", "a/b")
	if err != nil {
		t.Fatal(err)
	}
	r.UpdatedAt = base.Add(24 * time.Hour)
	if err := s2.PutDecision(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if entries, err := c.ZCard(ctx, "old:recent").Result(); err != nil || entries != n {
		t.Fatalf("index holds %d entries after a write, want %d (%v)", entries, n, err)
	}
	// A write cut short after its index entry (a replica died): the entry
	// is skipped, the record listed once, at its stored time.
	ahead := fmt.Sprintf("%016x\x00%s\x00docker.io/a/b", ^uint64(base.Add(48*time.Hour).UnixNano()), r.Digest)
	orphan := fmt.Sprintf("%016x\x00%s\x00docker.io/a/b", ^uint64(base.Add(48*time.Hour).UnixNano()), fmt.Sprintf("sha256:%064x", n+1))
	if err := c.ZAdd(ctx, "old:recent", redis.Z{Member: ahead}, redis.Z{Member: orphan}).Err(); err != nil {
		t.Fatal(err)
	}
	got := byTime(t, s2)
	want = append([]string{r.Digest + " docker.io/a/b"}, want[:n-1]...)
	if !slices.Equal(got, want) {
		t.Fatalf("with leftover entries: %d listed, first %v; want %d, first %v", len(got), got[:2], len(want), want[:2])
	}
}
