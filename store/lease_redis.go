package store

// Redis keys of RedisLeases (P: the store's key prefix):
//
//	P lease:<key>   string: the owner; expires with the lease (PX)
//
// Each script touches one key, so no hash tag is needed in Redis Cluster.

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisLeases are leases in Redis, shared by every replica: SET NX PX to
// take one, compare-and-renew and compare-and-delete scripts so only the
// owner renews or releases. Leases run on the Redis server's clock.
type RedisLeases struct {
	c              redis.UniversalClient
	prefix         string
	renew, release *redis.Script
}

// NewRedisLeases returns leases under prefix.
func NewRedisLeases(c redis.UniversalClient, prefix string) *RedisLeases {
	return &RedisLeases{
		c: c, prefix: prefix + "lease:",
		renew: redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0`),
		release: redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`),
	}
}

// Acquire implements Leases.
func (l *RedisLeases) Acquire(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if err := checkLease(key, owner, ttl); err != nil {
		return false, fmt.Errorf("acquire lease: %w", err)
	}
	ok, err := l.c.SetNX(ctx, l.prefix+key, owner, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("acquire lease %s: %w", key, err)
	}
	return ok, nil
}

// Renew implements Leases.
func (l *RedisLeases) Renew(ctx context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if err := checkLease(key, owner, ttl); err != nil {
		return false, fmt.Errorf("renew lease: %w", err)
	}
	n, err := l.renew.Run(ctx, l.c, []string{l.prefix + key}, owner, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("renew lease %s: %w", key, err)
	}
	return n == 1, nil
}

// Release implements Leases.
func (l *RedisLeases) Release(ctx context.Context, key, owner string) error {
	if err := checkLease(key, owner, minLeaseDuration); err != nil {
		return fmt.Errorf("release lease: %w", err)
	}
	if err := l.release.Run(ctx, l.c, []string{l.prefix + key}, owner).Err(); err != nil {
		return fmt.Errorf("release lease %s: %w", key, err)
	}
	return nil
}
