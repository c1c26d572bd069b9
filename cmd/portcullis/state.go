package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

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
