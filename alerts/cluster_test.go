package alerts

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/test/redisserver"
)

// Every replica sees every event; the lease makes exactly one of them
// deliver each alert, whichever it is, with leases in Redis (replicas)
// or in memory (one process, two alerters).
func TestOneReplicaDeliversEachAlert(t *testing.T) {
	for _, tc := range []struct {
		name   string
		leases func(t *testing.T) (a, b store.Leases)
	}{
		{"local", func(t *testing.T) (store.Leases, store.Leases) {
			l := store.NewLocalLeases(0)
			return l, l
		}},
		{"redis", func(t *testing.T) (store.Leases, store.Leases) {
			srv := redisserver.Start(t)
			client := func() store.Leases {
				c := redis.NewClient(&redis.Options{Addr: srv.Addr})
				t.Cleanup(func() { c.Close() })
				return store.NewRedisLeases(c, "portcullis:")
			}
			return client(), client() // two connections, as two replicas have
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := newReceiver(t, nil)
			la, lb := tc.leases(t)
			hooks := []Webhook{testHook("ops", rc.URL, FormatJSON, KindBlock, KindDBUpdated)}
			a := newRig(t, Options{Webhooks: hooks, Leases: la, Owner: "replica-a"})
			b := newRig(t, Options{Webhooks: hooks, Leases: lb, Owner: "replica-b"})
			events := []string{"library/alpine", "team/alpine", "library/busybox"}
			for i, repo := range events {
				e := blockEvent("e"+string(rune('0'+i)), repo)
				// Both replicas get the event, in either order.
				if i%2 == 0 {
					a.send(e)
					b.send(e)
				} else {
					b.send(e)
					a.send(e)
				}
			}
			up := blockEvent("u", "")
			up.Type, up.DBVersion = "db_updated", "sha256:cd@2026-12-02T00:00:00Z"
			a.send(up)
			b.send(up)
			rc.wait(t, 4)
			handled := func() int64 {
				var n int64
				for _, r := range []*rig{a, b} {
					n += r.count(t, "ops", "sent") + r.count(t, "ops", "suppressed")
				}
				return n
			}
			for deadline := time.Now().Add(20 * time.Second); handled() < 8; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the replicas handled %d alerts after 20 s, want 8 (4 sent, 4 suppressed)", handled())
				}
			}
			if n := a.count(t, "ops", "sent") + b.count(t, "ops", "sent"); n != 4 {
				t.Fatalf("sent %d, want 4", n)
			}
			time.Sleep(200 * time.Millisecond) // no late duplicate arrives
			var got []string
			for _, req := range rc.requests() {
				var doc Document
				_ = json.Unmarshal(req.body, &doc)
				got = append(got, doc.Type+" "+doc.Repository)
			}
			slices.Sort(got)
			if want := []string{"block library/alpine", "block library/busybox", "block team/alpine", "db_updated "}; !slices.Equal(got, want) {
				t.Fatalf("delivered %v, want each once: %v", got, want)
			}
		})
	}
}
