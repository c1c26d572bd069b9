package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/store/storetest"
	"github.com/portcullis/portcullis/test/redisserver"
)

// TestRedis runs the conformance suites against a real redis-server; each
// subtest gets a fresh key prefix on the same server.
func TestRedis(t *testing.T) {
	srv := redisserver.Start(t)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) store.Store {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr})
		s, err := store.NewRedis(c, fmt.Sprintf("pt%d", n.Add(1)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestOpenRedis(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	dir := t.TempDir()
	passwordFile := filepath.Join(dir, "password")
	if err := os.WriteFile(passwordFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongFile := filepath.Join(dir, "wrong")
	if err := os.WriteFile(wrongFile, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A server that needs a password, set through an unauthenticated
	// connection first.
	locked := redisserver.Start(t)
	c := redis.NewClient(&redis.Options{Addr: locked.Addr})
	if err := c.ConfigSet(ctx, "requirepass", "s3cret").Err(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	t.Setenv("PORTCULLIS_TEST_REDIS_PASSWORD", "s3cret")
	down := redisserver.Start(t)
	down.Kill()
	tests := []struct {
		name    string
		cfg     store.RedisConfig
		wantErr string // "": opens and works
	}{
		{"standalone", store.RedisConfig{Addrs: []string{srv.Addr}}, ""},
		{"password file", store.RedisConfig{Addrs: []string{locked.Addr}, PasswordFile: passwordFile}, ""},
		{"password env", store.RedisConfig{Addrs: []string{locked.Addr}, PasswordEnv: "PORTCULLIS_TEST_REDIS_PASSWORD"}, ""},
		{"no password", store.RedisConfig{Addrs: []string{locked.Addr}}, "redis at " + locked.Addr + ": NOAUTH"},
		{"wrong password", store.RedisConfig{Addrs: []string{locked.Addr}, PasswordFile: wrongFile}, "redis at " + locked.Addr + ": WRONGPASS"},
		{"missing password file", store.RedisConfig{Addrs: []string{locked.Addr}, PasswordFile: filepath.Join(dir, "none")}, "read password_file"},
		{"unset password env", store.RedisConfig{Addrs: []string{locked.Addr}, PasswordEnv: "PORTCULLIS_TEST_UNSET"}, "PORTCULLIS_TEST_UNSET (password_env) is not set"},
		{"unreachable", store.RedisConfig{Addrs: []string{down.Addr}}, "redis at " + down.Addr + ": "},
		{"no address", store.RedisConfig{}, "no address configured"},
		{"ca without tls", store.RedisConfig{Addrs: []string{srv.Addr}, CAFile: passwordFile}, "ca_file needs tls"},
		{"ca not pem", store.RedisConfig{Addrs: []string{srv.Addr}, TLS: true, CAFile: passwordFile}, "holds no PEM certificate"},
		{"prefix with braces", store.RedisConfig{Addrs: []string{srv.Addr}, KeyPrefix: "a{b}"}, "must not contain { or }"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := store.OpenRedis(ctx, tt.cfg)
			if tt.wantErr != "" {
				if err == nil {
					s.Close()
					t.Fatalf("opened, want an error with %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if err := s.PutTag(ctx, "k", store.TagEntry{Size: 1}); err != nil {
				t.Fatal(err)
			}
			if e, err := s.Tag(ctx, "k"); err != nil || e.Size != 1 {
				t.Fatalf("tag: %+v, %v", e, err)
			}
		})
	}
}

// TestRedisCorruptValues: values in Redis that are not what the store
// wrote give errors naming the record, never a panic or a silent zero.
func TestRedisCorruptValues(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	s, err := store.NewRedis(c, "bad")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	d := fmt.Sprintf("sha256:%064x", 1)
	for _, kv := range [][2]string{
		{"bad:tag:k", "{not json"},
		{"bad:{docker.io/a/b}:link:" + d, "-5"},
		{"bad:{docker.io/a/b}:verdicts", "not a hash"},
	} {
		if err := c.Set(ctx, kv[0], kv[1], 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.HSet(ctx, "bad:{"+d+"}:scan", "record", "[1,2", "revision", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.HSet(ctx, "bad:{docker.io/a/b}:decision:"+d, "record", "nope", "revision", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.SAdd(ctx, "bad:{"+d+"}:decided-in", "docker.io/a/b").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.SAdd(ctx, "bad:{docker.io/a/b}:images:"+d, d).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.HSet(ctx, "bad:{artifacts}:contents", d, "nope").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "bad:{artifacts}:referrers:s", "nope", 0).Err(); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		err  error
		want string
	}{
		{"tag", func() error { _, err := s.Tag(ctx, "k"); return err }(), "read tag k"},
		{"scan", func() error { _, err := s.Scan(ctx, d); return err }(), "read scan " + d},
		{"decision", func() error { _, err := s.Decision(ctx, d, "docker.io", "a/b"); return err }(), "read decision on " + d},
		{"decisions", s.Decisions(ctx, d, func(store.DecisionRecord) bool { return true }), "read decision on " + d},
		{"link", func() error { _, _, err := s.BlobLink(ctx, "docker.io", "a/b", d); return err }(), "look up blob " + d},
		{"blob images", s.BlobImages(ctx, "docker.io", "a/b", d, func(string, string) bool { return true }), "images with blob " + d},
		{"content", func() error { _, err := s.Content(ctx, d); return err }(), "read content " + d},
		{"referrers", func() error { _, err := s.Referrers(ctx, "s"); return err }(), "read referrers of s"},
		{"add contents", s.AddContents(ctx, "s", map[string]store.Content{"x": {}}), "add content for s"},
	}
	for _, c := range checks {
		if c.err == nil || !strings.Contains(c.err.Error(), c.want) || errors.Is(c.err, store.ErrNotFound) {
			t.Errorf("%s: error %v, want one containing %q", c.name, c.err, c.want)
		}
	}
}

// TestRedisCluster runs the suites on Redis Cluster (one node that owns
// every slot): Redis refuses any multi-key command or script whose keys
// lie in different hash slots (CROSSSLOT), so this proves the key design
// works on a real cluster.
func TestRedisCluster(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.StartWith(t, "--cluster-enabled", "yes")
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer admin.Close()
	if err := admin.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Err(); err != nil {
		t.Fatal(err)
	}
	// The node reports the cluster usable once it has taken the slots.
	for i := 0; ; i++ {
		info, err := admin.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			break
		}
		if i == 200 {
			t.Fatalf("cluster not ready after %d checks: %q, %v", i, info, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) store.Store {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{srv.Addr}})
		s, err := store.NewRedis(c, fmt.Sprintf("ct%d", n.Add(1)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// TestRedisDecisionIndexWithoutRecord: PutDecision writes the indexes
// before the record, so a write that failed between them leaves index
// entries without a record; readers skip them, with no error.
func TestRedisDecisionIndexWithoutRecord(t *testing.T) {
	ctx := context.Background()
	srv := redisserver.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr})
	s, err := store.NewRedis(c, "half")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	written, orphan := fmt.Sprintf("sha256:%064x", 1), fmt.Sprintf("sha256:%064x", 2)
	r := store.DecisionRecord{Digest: written, Upstream: "docker.io", Repository: "a/b", Verdict: "allow"}
	if err := s.PutDecision(ctx, &r); err != nil {
		t.Fatal(err)
	}
	// What a PutDecision that stopped after its indexes leaves.
	if err := c.ZAdd(ctx, "half:decided", redis.Z{Member: orphan}).Err(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{written, orphan} {
		if err := c.SAdd(ctx, "half:{"+d+"}:decided-in", "docker.io/c/d").Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"", written, orphan} {
		var got []string
		err := s.Decisions(ctx, d, func(r store.DecisionRecord) bool {
			got = append(got, r.Digest+" "+r.Upstream+"/"+r.Repository)
			return true
		})
		want := []string{written + " docker.io/a/b"}
		if d == orphan {
			want = nil
		}
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("Decisions(%q) = %v, %v; want %v", d, got, err, want)
		}
	}
	if _, err := s.Decision(ctx, orphan, "docker.io", "c/d"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Decision of an index entry without record: %v, want ErrNotFound", err)
	}
}
