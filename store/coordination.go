package store

import "fmt"

// Coordination is what replicas use to work as one proxy: the queue of
// images to evaluate, leases (one download per blob), and events every
// replica sees. The embedded store gives one process's versions (the
// queue persisted in its state file); Redis gives cluster-wide ones.
type Coordination struct {
	Queue Queue
	// Publications queues the verdicts to publish as referrers.
	Publications Queue
	Leases       Leases
	Events       Events
	// Counters count events across replicas by the hour (blocked pulls).
	Counters Counters
}

// Names of the queues: images to evaluate, verdicts to publish.
const (
	scanQueue        = "scans"
	publicationQueue = "publications"
)

// Coordination implements Coordinated for the embedded store.
func (b *Bolt) Coordination() (Coordination, error) {
	q, err := b.Queue(scanQueue)
	if err != nil {
		return Coordination{}, fmt.Errorf("open scan queue: %w", err)
	}
	pq, err := b.Queue(publicationQueue)
	if err != nil {
		return Coordination{}, fmt.Errorf("open publication queue: %w", err)
	}
	return Coordination{Queue: q, Publications: pq, Leases: NewLocalLeases(0), Events: NewLocalEvents(), Counters: b}, nil
}

// Coordination implements Coordinated for Redis.
func (r *Redis) Coordination() (Coordination, error) {
	q, err := NewRedisQueue(r.c, r.keys.prefix+":", scanQueue)
	if err != nil {
		return Coordination{}, fmt.Errorf("open scan queue: %w", err)
	}
	pq, err := NewRedisQueue(r.c, r.keys.prefix+":", publicationQueue)
	if err != nil {
		return Coordination{}, fmt.Errorf("open publication queue: %w", err)
	}
	return Coordination{Queue: q, Publications: pq, Leases: NewRedisLeases(r.c, r.keys.prefix+":"), Events: NewRedisEvents(r.c, r.keys.prefix+":"), Counters: r}, nil
}

// Coordinated is a store that offers Coordination.
type Coordinated interface {
	Coordination() (Coordination, error)
}
