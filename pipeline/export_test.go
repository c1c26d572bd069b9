package pipeline

// SetMemoLimit shrinks the in-memory caches, so tests can hold more
// state than they do.
func (p *Pipeline) SetMemoLimit(n int) { p.memoLimit = n }

// SetQueueLimit shrinks the bound on queued scans.
func (p *Pipeline) SetQueueLimit(n int) { p.maxQueued = n }
