package store_test

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/store/storetest"
	"github.com/portcullis/portcullis/test/harness"
)

// startClusterNode runs a one-node Redis Cluster holding every slot: a
// script that touches keys of different slots fails there with CROSSSLOT,
// as it would on a real cluster, so the hash tags are checked for real.
func startClusterNode(t *testing.T) redis.UniversalClient {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not found (the test command installs Debian's redis-server): %v", err)
	}
	dir, port := t.TempDir(), harness.FreePort(t)
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", fmt.Sprint(port), "--dir", dir,
		"--save", "", "--appendonly", "no", "--loglevel", "warning",
		"--cluster-enabled", "yes", "--cluster-config-file", dir+"/nodes.conf")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	node := redis.NewClient(&redis.Options{Addr: addr})
	defer node.Close()
	ctx := t.Context()
	ready := false
	for range 200 { // bounded: 10 s
		if node.Ping(ctx).Err() == nil {
			ready = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !ready {
		t.Fatal("cluster node did not answer PING")
	}
	if err := node.Do(ctx, "cluster", "addslotsrange", 0, 16383).Err(); err != nil {
		t.Fatalf("assign slots: %v", err)
	}
	ready = false
	for range 200 {
		info, err := node.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			ready = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !ready {
		t.Fatal("one-node cluster did not become ready")
	}
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}, IsClusterMode: true})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisClusterQueueLeasesEvents(t *testing.T) {
	c := startClusterNode(t)
	n := 0
	prefix := func() string { n++; return fmt.Sprintf("pc%d:", n) }
	t.Run("queue", func(t *testing.T) {
		storetest.RunQueue(t, func(t *testing.T, opts ...store.QueueOption) (store.Queue, func() store.Queue) {
			p := prefix()
			open := func() store.Queue {
				q, err := store.NewRedisQueue(c, p, "eval", opts...)
				if err != nil {
					t.Fatal(err)
				}
				return q
			}
			return open(), open
		})
	})
	t.Run("leases", func(t *testing.T) {
		storetest.RunLeases(t, func(*testing.T) store.Leases { return store.NewRedisLeases(c, prefix()) })
	})
	t.Run("events", func(t *testing.T) {
		storetest.RunEvents(t, func(_ *testing.T, opts ...store.EventsOption) func() store.Events {
			p := prefix()
			return func() store.Events { return store.NewRedisEvents(c, p, opts...) }
		})
	})
}
