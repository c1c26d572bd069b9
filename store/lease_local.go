package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrTooManyLeases means a LocalLeases holds its maximum of live leases.
var ErrTooManyLeases = errors.New("too many leases held")

// DefaultMaxLeases bounds the live leases a LocalLeases holds.
const DefaultMaxLeases = 1 << 16

// LocalLeases are leases in this process's memory: enough for the embedded
// store, where one process holds the state file anyway. Times are read
// from the monotonic clock.
type LocalLeases struct {
	mu   sync.Mutex
	held map[string]localLease
	max  int
}

type localLease struct {
	owner   string
	expires time.Time
}

// NewLocalLeases returns in-memory leases holding at most max live leases
// (0: DefaultMaxLeases).
func NewLocalLeases(max int) *LocalLeases {
	if max <= 0 {
		max = DefaultMaxLeases
	}
	return &LocalLeases{held: make(map[string]localLease), max: max}
}

// Acquire implements Leases.
func (l *LocalLeases) Acquire(_ context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if err := checkLease(key, owner, ttl); err != nil {
		return false, fmt.Errorf("acquire lease: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if cur, ok := l.held[key]; ok && now.Before(cur.expires) {
		return false, nil
	}
	if _, ok := l.held[key]; !ok && len(l.held) >= l.max {
		l.sweep(now)
		if len(l.held) >= l.max {
			return false, fmt.Errorf("acquire lease %s: %d held: %w", key, len(l.held), ErrTooManyLeases)
		}
	}
	l.held[key] = localLease{owner: owner, expires: now.Add(ttl)}
	return true, nil
}

// sweep forgets expired leases; it runs only when the map is full, so its
// cost is paid once per max acquisitions at most.
func (l *LocalLeases) sweep(now time.Time) {
	for k, v := range l.held {
		if !now.Before(v.expires) {
			delete(l.held, k)
		}
	}
}

// Renew implements Leases.
func (l *LocalLeases) Renew(_ context.Context, key, owner string, ttl time.Duration) (bool, error) {
	if err := checkLease(key, owner, ttl); err != nil {
		return false, fmt.Errorf("renew lease: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	cur, ok := l.held[key]
	if !ok || cur.owner != owner || !now.Before(cur.expires) {
		return false, nil
	}
	l.held[key] = localLease{owner: owner, expires: now.Add(ttl)}
	return true, nil
}

// Release implements Leases.
func (l *LocalLeases) Release(_ context.Context, key, owner string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.held[key]; ok && cur.owner == owner {
		delete(l.held, key)
	}
	return nil
}
