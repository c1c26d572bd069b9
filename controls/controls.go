// Package controls holds each replica's view of the operators'
// quarantines and exceptions in force, and lays them over the policy's
// verdicts: quarantine > exception > policy. The view is complete (every
// entry of the store, within the store's bounds), reloaded when the
// store's controls version moves, and never dropped on a read error.
package controls

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/portcullis/portcullis/store"
)

// Store is what the view reads and sweeps: the controls, the audit log
// for their expiries, and the index → child relations that carry an
// index's quarantine to its children.
type Store interface {
	store.ControlStore
	store.AuditStore
	Parents(ctx context.Context, upstream, repo, child string, fn func(index string) bool) error
}

// Options tune a View; the zero value is the server's.
type Options struct {
	Logger *slog.Logger
	// Now is the clock expiries are read against; nil: time.Now.
	Now func() time.Time
	// Poll is how often the store's controls version is read; 0: 250 ms,
	// so every replica applies a change within a second.
	Poll time.Duration
	// Sweep is how often expired entries are removed from the store; 0:
	// one second. They stop applying at their expiry whatever this is.
	Sweep time.Duration
	// Audit records an expiry; nil appends to the store's audit log.
	// The server passes the pipeline's, which also announces it.
	Audit func(ctx context.Context, rec store.AuditRecord) error
	// Replica names this process in audit records.
	Replica string
}

// View is one replica's view of the controls in force.
type View struct {
	st  Store
	o   Options
	log *slog.Logger

	// reload serialises loads, so an older listing never replaces a
	// newer one.
	reload sync.Mutex

	mu          sync.RWMutex
	loaded      bool
	version     uint64
	quarantines map[string]store.Quarantine  // by digest
	exceptions  map[string][]store.Exception // by digest, in ID order

	parentsMu   sync.Mutex
	parentsMemo map[parentsKey]parentsEntry // parents.go
}

// New returns an empty view of st; Refresh or Run loads it.
func New(st Store, o Options) *View {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Poll <= 0 {
		o.Poll = 250 * time.Millisecond
	}
	if o.Sweep <= 0 {
		o.Sweep = time.Second
	}
	if o.Audit == nil {
		o.Audit = func(ctx context.Context, rec store.AuditRecord) error { return st.AppendAudit(ctx, &rec) }
	}
	return &View{st: st, o: o, log: o.Logger,
		quarantines: map[string]store.Quarantine{}, exceptions: map[string][]store.Exception{}}
}

// Refresh reloads the whole view from the store now: the API calls it
// after each change, so the replica that took the request applies it at
// once. On a read error the last complete view stays.
func (v *View) Refresh(ctx context.Context) error {
	v.reload.Lock()
	defer v.reload.Unlock()
	version, err := v.st.ControlsVersion(ctx)
	if err != nil {
		return fmt.Errorf("reload controls: %w", err)
	}
	return v.load(ctx, version)
}

// poll reloads the view when the store's version differs from the one
// loaded (or nothing is loaded yet).
func (v *View) poll(ctx context.Context) error {
	v.reload.Lock()
	defer v.reload.Unlock()
	version, err := v.st.ControlsVersion(ctx)
	if err != nil {
		return fmt.Errorf("poll controls version: %w", err)
	}
	v.mu.RLock()
	current := v.loaded && v.version == version
	v.mu.RUnlock()
	if current {
		return nil
	}
	return v.load(ctx, version)
}

// load reads every quarantine and exception and puts them in force
// together, as of version (read before the listings, so a change made
// while listing is loaded again on the next poll). Callers hold reload.
func (v *View) load(ctx context.Context, version uint64) error {
	quarantines := map[string]store.Quarantine{}
	var tooMany error
	err := v.st.Quarantines(ctx, "", func(q store.Quarantine) bool {
		if len(quarantines) >= store.MaxQuarantines {
			tooMany = fmt.Errorf("more than %d quarantines", store.MaxQuarantines)
			return false
		}
		quarantines[q.Digest] = q
		return true
	})
	if err == nil {
		err = tooMany
	}
	if err != nil {
		return fmt.Errorf("reload controls: %w", err)
	}
	exceptions := map[string][]store.Exception{}
	n := 0
	err = v.st.Exceptions(ctx, "", func(e store.Exception) bool {
		if n >= store.MaxExceptions {
			tooMany = fmt.Errorf("more than %d exceptions", store.MaxExceptions)
			return false
		}
		n++
		exceptions[e.Digest] = append(exceptions[e.Digest], e)
		return true
	})
	if err == nil {
		err = tooMany
	}
	if err != nil {
		return fmt.Errorf("reload controls: %w", err)
	}
	for _, list := range exceptions {
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	}
	v.mu.Lock()
	v.loaded, v.version, v.quarantines, v.exceptions = true, version, quarantines, exceptions
	v.mu.Unlock()
	return nil
}

// Version is the store's controls version the view was loaded at; memos
// of answers that depend on the controls are keyed on it.
func (v *View) Version() uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.version
}

// Run keeps the view current until ctx ends: it polls the store's
// version and sweeps expired entries. A failed read is logged and the
// last view kept.
func (v *View) Run(ctx context.Context) {
	poll := time.NewTicker(v.o.Poll)
	defer poll.Stop()
	sweep := time.NewTicker(v.o.Sweep)
	defer sweep.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			err := v.poll(ctx)
			switch {
			case err != nil && ctx.Err() == nil && !failing:
				// Once per outage: the poll runs four times a second.
				v.log.Warn("controls cannot be read; the last view stays in force", "err", err)
				failing = true
			case err == nil && failing:
				v.log.Info("controls readable again")
				failing = false
			}
		case <-sweep.C:
			if err := v.Sweep(ctx); err != nil && ctx.Err() == nil {
				v.log.Warn("sweep expired controls", "err", err)
			}
		}
	}
}
