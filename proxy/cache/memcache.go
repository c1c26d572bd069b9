package cache

import (
	"container/list"
	"sync"

	"github.com/opencontainers/go-digest"
)

// memCache keeps recently used manifests in memory: manifests are small,
// read on every pull, and worth no disk round trip.
type memCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	items map[digest.Digest]*list.Element
	lru   list.List
}

type memItem struct {
	d         digest.Digest
	body      []byte
	mediaType string
}

func newMemCache(max int64) *memCache {
	return &memCache{max: max, items: map[digest.Digest]*list.Element{}}
}

func (c *memCache) get(d digest.Digest) ([]byte, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[d]
	if !ok {
		return nil, "", false
	}
	c.lru.MoveToFront(el)
	it := el.Value.(*memItem)
	return it.body, it.mediaType, true
}

func (c *memCache) put(d digest.Digest, body []byte, mediaType string) {
	if int64(len(body)) > c.max/4 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[d]; ok {
		return
	}
	c.items[d] = c.lru.PushFront(&memItem{d: d, body: body, mediaType: mediaType})
	c.size += int64(len(body))
	for c.size > c.max {
		back := c.lru.Back()
		it := back.Value.(*memItem)
		c.lru.Remove(back)
		delete(c.items, it.d)
		c.size -= int64(len(it.body))
	}
}

func (c *memCache) remove(d digest.Digest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[d]; ok {
		c.lru.Remove(el)
		delete(c.items, d)
		c.size -= int64(len(el.Value.(*memItem).body))
	}
}
