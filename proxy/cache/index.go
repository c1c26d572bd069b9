package cache

import (
	"container/list"
	"sync"

	"github.com/opencontainers/go-digest"
)

// index tracks what the store holds, how big it is and how recently each
// item was used, so eviction needs no listing of the storage driver. It is
// rebuilt from the driver at start-up; entries missing from it are looked up
// on the driver on demand, so a partial index only delays eviction.
type index struct {
	mu      sync.Mutex
	entries map[digest.Digest]*entry
	lru     list.List // front is most recently used; values are *entry
	total   int64
}

type entry struct {
	d    digest.Digest
	size int64
	pins int // readers currently serving it; pinned entries are never evicted
	elem *list.Element
}

func newIndex() *index {
	return &index{entries: map[digest.Digest]*entry{}}
}

// add records an item just committed, as the most recently used.
func (ix *index) add(d digest.Digest, size int64) {
	ix.insert(d, size, false)
}

// addFound records an item found on storage at start-up. Callers add them
// newest first; they all rank behind anything used since start.
func (ix *index) addFound(d digest.Digest, size int64) {
	ix.insert(d, size, true)
}

func (ix *index) insert(d digest.Digest, size int64, atBack bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if _, ok := ix.entries[d]; ok {
		return
	}
	e := &entry{d: d, size: size}
	if atBack {
		e.elem = ix.lru.PushBack(e)
	} else {
		e.elem = ix.lru.PushFront(e)
	}
	ix.entries[d] = e
	ix.total += size
}

// pin marks d as being served and returns its size.
func (ix *index) pin(d digest.Digest) (int64, bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	e, ok := ix.entries[d]
	if !ok {
		return 0, false
	}
	e.pins++
	ix.lru.MoveToFront(e.elem)
	return e.size, true
}

func (ix *index) unpin(d digest.Digest) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e, ok := ix.entries[d]; ok && e.pins > 0 {
		e.pins--
	}
}

func (ix *index) touch(d digest.Digest) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e, ok := ix.entries[d]; ok {
		ix.lru.MoveToFront(e.elem)
	}
}

func (ix *index) remove(d digest.Digest) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if e, ok := ix.entries[d]; ok {
		ix.lru.Remove(e.elem)
		delete(ix.entries, d)
		ix.total -= e.size
	}
}

// victims removes least recently used, unpinned entries until the total is
// within max, and returns them for deletion.
func (ix *index) victims(max int64) []digest.Digest {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var out []digest.Digest
	for el := ix.lru.Back(); el != nil && ix.total > max; {
		e := el.Value.(*entry)
		prev := el.Prev()
		if e.pins == 0 {
			ix.lru.Remove(el)
			delete(ix.entries, e.d)
			ix.total -= e.size
			out = append(out, e.d)
		}
		el = prev
	}
	return out
}

func (ix *index) totalBytes() int64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.total
}
