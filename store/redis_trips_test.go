package store_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/test/redisserver"
)

// tripCounter is a go-redis hook that records every round trip the client
// makes: one per command sent alone, one per pipeline.
type tripCounter struct {
	mu    sync.Mutex
	trips []string
}

func (h *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.record(cmd.Name())
		return next(ctx, cmd)
	}
}

func (h *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := make([]string, len(cmds))
		for i, c := range cmds {
			names[i] = c.Name()
		}
		h.record("pipeline(" + strings.Join(names, ",") + ")")
		return next(ctx, cmds)
	}
}

func (h *tripCounter) record(what string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.trips = append(h.trips, what)
}

func (h *tripCounter) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.trips
	h.trips = nil
	return out
}

// commandCalls reads how often the server ran each command since the
// last CONFIG RESETSTAT, from INFO commandstats
// ("cmdstat_NAME:calls=N,usec=…" lines).
func commandCalls(ctx context.Context, c *redis.Client) (map[string]int, error) {
	raw, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, err
	}
	calls := map[string]int{}
	for line := range strings.Lines(raw) {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for field := range strings.SplitSeq(stats, ",") {
			if v, ok := strings.CutPrefix(field, "calls="); ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					return nil, fmt.Errorf("INFO commandstats line %q: %w", line, err)
				}
				calls[strings.TrimPrefix(name, "cmdstat_")] += n
			}
		}
	}
	return calls, nil
}

// eachNode runs fn on every server behind c: c itself, or each node of a
// cluster.
func eachNode(ctx context.Context, c redis.UniversalClient, fn func(*redis.Client) error) error {
	if cc, ok := c.(*redis.ClusterClient); ok {
		return cc.ForEachShard(ctx, func(ctx context.Context, node *redis.Client) error { return fn(node) })
	}
	return fn(c.(*redis.Client))
}

// TestRedisBlobGateOneRoundTrip: the blob gate's read (the images of a
// repository that reference a blob, with their verdicts there) is one
// round trip to Redis, one script, for a set of the usual size, whatever
// verdicts the images have. Issue 9: the hot path touches shared state at
// most once per request.
func TestRedisBlobGateOneRoundTrip(t *testing.T) {
	t.Run("standalone", func(t *testing.T) {
		srv := redisserver.Start(t)
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 1})
		checkBlobGateOneRoundTrip(t, c)
	})
	t.Run("cluster", func(t *testing.T) {
		checkBlobGateOneRoundTrip(t, startClusterNode(t))
	})
}

func checkBlobGateOneRoundTrip(t *testing.T, c redis.UniversalClient) {
	ctx := context.Background()
	trips := &tripCounter{}
	c.AddHook(trips)
	s, err := store.NewRedis(c, "trips")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	digest := func(n int) string { return fmt.Sprintf("sha256:%064x", n) }
	layer := digest(1000)
	tests := []struct {
		name     string
		verdicts []string // per image linked to the layer; "" : none stored
	}{
		{"no image", nil},
		{"one allowed image", []string{"allow"}},
		{"one undecided image", []string{""}},
		{"mixed images", []string{"block", "", "warn", "allow", "block"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := fmt.Sprintf("r/%d", i)
			var want []string
			for j, v := range tt.verdicts {
				image := digest(j + 1)
				if err := s.LinkImage(ctx, "docker.io", repo, image, []store.BlobRef{{Digest: layer, Size: 10}}); err != nil {
					t.Fatal(err)
				}
				if v != "" {
					if err := s.PutDecision(ctx, &store.DecisionRecord{Digest: image, Upstream: "docker.io", Repository: repo, Verdict: v}); err != nil {
						t.Fatal(err)
					}
				}
				want = append(want, image+"="+v)
			}
			read := func() []string {
				var got []string
				err := s.BlobImages(ctx, "docker.io", repo, layer, func(image, verdict string) bool {
					got = append(got, image+"="+verdict)
					return true
				})
				if err != nil {
					t.Fatal(err)
				}
				slices.Sort(got)
				return got
			}
			read() // loads the script into the server once (EVAL after NOSCRIPT)
			if err := eachNode(ctx, c, func(n *redis.Client) error { return n.ConfigResetStat(ctx).Err() }); err != nil {
				t.Fatal(err)
			}
			trips.take()
			if got := read(); !slices.Equal(got, want) {
				t.Fatalf("BlobImages = %v, want %v", got, want)
			}
			if got := trips.take(); len(got) != 1 {
				t.Fatalf("the blob gate's read took %d round trips %v, want 1", len(got), got)
			}
			calls := map[string]int{}
			err := eachNode(ctx, c, func(n *redis.Client) error {
				nc, err := commandCalls(ctx, n)
				for k, v := range nc {
					calls[k] += v
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if calls["evalsha"] != 1 || calls["eval"] != 0 || calls["hget"] != 0 {
				t.Fatalf("server ran %v, want one EVALSHA and no EVAL or HGET", calls)
			}
		})
	}
}
