package store_test

import (
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/store/storetest"
	"github.com/portcullis/portcullis/test/redisserver"
)

func TestLayerStates(t *testing.T) {
	t.Run("bolt", func(t *testing.T) {
		storetest.RunLayerStates(t, func(t *testing.T) storetest.LayerStates {
			s, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
	t.Run("redis", func(t *testing.T) {
		srv := redisserver.Start(t)
		var n atomic.Int64
		storetest.RunLayerStates(t, func(t *testing.T) storetest.LayerStates {
			s, err := store.NewRedis(redis.NewClient(&redis.Options{Addr: srv.Addr}), fmt.Sprintf("ls%d", n.Add(1)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		})
	})
}

// Both stores are layer caches the scanner can use.
var (
	_ scanner.LayerCache = (*store.Bolt)(nil)
	_ scanner.LayerCache = (*store.Redis)(nil)
)
