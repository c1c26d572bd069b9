package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig says how to reach Redis (the store.redis configuration).
type RedisConfig struct {
	// Addrs: one address is a standalone server; several are a cluster;
	// with MasterName they are Sentinels.
	Addrs      []string
	MasterName string
	// The password comes from a file or an environment variable, never
	// from the configuration itself.
	PasswordFile string
	PasswordEnv  string
	DB           int
	TLS          bool
	CAFile       string // with TLS: trust these roots instead of the system's
	KeyPrefix    string // "": DefaultRedisPrefix
}

// redisPingTimeout bounds the check at start that Redis answers.
const redisPingTimeout = 5 * time.Second

// OpenRedis connects to Redis as cfg says and checks once that it
// answers, so a wrong address or password fails at start, clearly.
func OpenRedis(ctx context.Context, cfg RedisConfig) (*Redis, error) {
	where := "redis at " + strings.Join(cfg.Addrs, ",")
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("redis: no address configured (store.redis.addrs)")
	}
	password, err := cfg.password()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	opts := &redis.UniversalOptions{
		Addrs:      cfg.Addrs,
		MasterName: cfg.MasterName,
		Password:   password,
		DB:         cfg.DB,
		ClientName: "portcullis",
	}
	if cfg.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("%s: read ca_file: %w", where, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s: ca_file %s holds no PEM certificate", where, cfg.CAFile)
			}
			tc.RootCAs = pool
		}
		opts.TLSConfig = tc
	} else if cfg.CAFile != "" {
		return nil, fmt.Errorf("%s: ca_file needs tls: true", where)
	}
	c := redis.NewUniversalClient(opts)
	pctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	s, err := NewRedis(c, cfg.KeyPrefix)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return s, nil
}

func (cfg RedisConfig) password() (string, error) {
	switch {
	case cfg.PasswordFile != "" && cfg.PasswordEnv != "":
		return "", errors.New("set password_file or password_env, not both")
	case cfg.PasswordFile != "":
		b, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("read password_file: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case cfg.PasswordEnv != "":
		v, ok := os.LookupEnv(cfg.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("environment variable %s (password_env) is not set", cfg.PasswordEnv)
		}
		return v, nil
	}
	return "", nil
}

// Ping checks that Redis answers, for readiness reports.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}
