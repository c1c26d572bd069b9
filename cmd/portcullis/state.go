package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/store"
)

// openState opens the store cfg.Store names: bbolt in the data directory,
// or Redis (the data directory then holds only local cache files).
func openState(ctx context.Context, cfg config.Config, log *slog.Logger) (store.Store, error) {
	switch cfg.Store.Driver {
	case config.StoreBolt, "":
		return store.OpenBolt(filepath.Join(cfg.DataDir, "state.db"))
	case config.StoreRedis:
		// go-redis logs every failed dial on its own; Portcullis reports
		// what a failure means (/readyz, warnings), so its lines go to
		// debug. Its logger is process-wide: set once, here, by main.
		redis.SetLogger(redisLogger{log})
		r := cfg.Store.Redis
		s, err := store.OpenRedis(ctx, store.RedisConfig{
			Addrs: r.Addrs, MasterName: r.MasterName, PasswordFile: r.PasswordFile, PasswordEnv: r.PasswordEnv,
			DB: r.DB, TLS: r.TLS, CAFile: r.CAFile, KeyPrefix: r.KeyPrefix,
		})
		if err != nil {
			return nil, fmt.Errorf("open state store: %w", err)
		}
		log.Info("state in redis", "addrs", r.Addrs, "master_name", r.MasterName, "db", r.DB, "tls", r.TLS)
		return s, nil
	}
	return nil, fmt.Errorf("store.driver %q: must be %s or %s", cfg.Store.Driver, config.StoreBolt, config.StoreRedis)
}

// replicaName names this process among the replicas sharing a state
// store: host, pid and a random suffix (a restarted process is another
// replica, whose predecessor's leases must run out, not be taken over).
func replicaName() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// coordination gives the queue, leases and events that go with state.
func coordination(state store.Store) (store.Coordination, error) {
	c, ok := state.(store.Coordinated)
	if !ok {
		return store.Coordination{}, fmt.Errorf("state store %T has no queue, leases or events", state)
	}
	return c.Coordination()
}

// redisLogger hands go-redis' own log lines to slog, at debug level.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}
