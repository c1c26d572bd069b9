package pipeline

// SetMemoLimit shrinks the in-memory caches, so tests can hold more
// state than they do.
func (p *Pipeline) SetMemoLimit(n int) { p.memoLimit = n }
