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
// over and over, and parsing them is a visible share of a warm request. Only
// headers up to memoAcceptBytes are remembered, at most memoAcceptEntries of
// them, so the memo holds at most a few MB whatever clients send; a longer
// (unusual) header is parsed on each request, which parseAccept bounds.
type acceptMemo struct {
	mu      sync.RWMutex
	entries map[string]parsedAccept
}

const (
	memoAcceptBytes   = 1 << 10
	memoAcceptEntries = 1024
)

type parsedAccept struct {
	types []string // never modified after parsing
	key   string
}

// standard is the Accept set of requests Portcullis makes for itself.
func (m *acceptMemo) standard() parsedAccept {
	p, _ := m.lookup(nil) // no header: the default list, never an error
	return p
}

func (m *acceptMemo) lookup(values []string) (parsedAccept, *regError) {
	size := 0
	for _, v := range values {
		size += len(v) + 1
	}
	remember := size <= memoAcceptBytes
	var raw string
	if remember {
		raw = strings.Join(values, "\n")
		m.mu.RLock()
		p, ok := m.entries[raw]
		m.mu.RUnlock()
		if ok {
			return p, nil
		}
	}
	types, err := parseAccept(values)
	if err != nil {
		return parsedAccept{}, err
	}
	p := parsedAccept{types: types, key: acceptKey(types)}
	if remember {
		m.mu.Lock()
		if m.entries == nil || len(m.entries) >= memoAcceptEntries {
			m.entries = map[string]parsedAccept{}
		}
		m.entries[raw] = p
		m.mu.Unlock()
	}
	return p, nil
}

// linkMemo keeps the blob links (repository holds blob) this process read
// or wrote, so a warm blob GET under auth does not ask the store again.
// Links are facts that stay true (the store never removes one), so a
// remembered link cannot let through what the store would refuse; a memo
// that starts over only costs store reads.
type linkMemo struct {
	mu      sync.RWMutex
	entries map[string]struct{}
}

func (m *linkMemo) has(key string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, ok := m.entries[key]
	return ok
}

func (m *linkMemo) add(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.entries == nil || len(m.entries) >= memoLimit {
		m.entries = map[string]struct{}{}
	}
	m.entries[key] = struct{}{}
}
