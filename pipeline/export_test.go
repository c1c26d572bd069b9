package pipeline

import "time"

// SetMemoLimit shrinks the in-memory caches, so tests can hold more
// state than they do.
func (p *Pipeline) SetMemoLimit(n int) { p.memoLimit = n }

// SetPublishLease shortens the lease of publication jobs, so a test can
// see a dead publisher's job taken over without waiting half a minute.
func (p *Pipeline) SetPublishLease(d time.Duration) { p.publishLease = d }
