package proxy

import (
	"strings"
	"sync"

	"github.com/portcullis/portcullis/store"
)

// memoLimit bounds each memo; when full it starts over, which costs a few
// store reads, never correctness.
const memoLimit = 100_000

// tagMemo keeps tag resolutions this process wrote or read, so a warm
// manifest-by-tag request within the TTL touches no storage. Entries carry
// their CheckedAt, so the TTL rule is the same as for the store.
type tagMemo struct {
	mu      sync.RWMutex
	entries map[string]store.TagEntry
}

func (m *tagMemo) get(key string) (store.TagEntry, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.entries[key]
	return e, ok
}

func (m *tagMemo) put(key string, e store.TagEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries == nil || len(m.entries) >= memoLimit {
		m.entries = map[string]store.TagEntry{}
	}
	m.entries[key] = e
}

// acceptMemo remembers parsed Accept headers: clients send the same few
// over and over, and parsing them is a visible share of a warm request.
type acceptMemo struct {
	mu      sync.RWMutex
	entries map[string]parsedAccept
}

type parsedAccept struct {
	types []string // never modified after parsing
	key   string
}

func (m *acceptMemo) lookup(values []string) parsedAccept {
	raw := strings.Join(values, "\n")
	m.mu.RLock()
	p, ok := m.entries[raw]
	m.mu.RUnlock()
	if ok {
		return p
	}
	types := parseAccept(values)
	p = parsedAccept{types: types, key: acceptKey(types)}
	m.mu.Lock()
	if m.entries == nil || len(m.entries) >= 1024 {
		m.entries = map[string]parsedAccept{}
	}
	m.entries[raw] = p
	m.mu.Unlock()
	return p
}
