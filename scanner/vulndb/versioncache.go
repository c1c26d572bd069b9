package vulndb

import (
	"hash/maphash"
	"sync"

	"github.com/google/osv-scalibr/semantic"
)

// Parsing the range bounds of the entries a match reads was the largest
// part of a match's CPU time and most of its allocations (osv-scalibr
// builds big.Ints, splits and regexps for each version), and the bounds
// are the same from one match to the next: they come from the database,
// not the image. So the parsed bounds are kept across Match calls, in a
// cache the DB (or the Shared handle that opens it) owns.
//
// A parsed bound is a pure function of (ecosystem, semver or ecosystem
// order, string): it is keyed on all three, so whatever database file or
// version it was read from, the cache cannot change a result. The parsed
// versions are shared between concurrent matches: osv-scalibr's Compare
// methods (v0.5.3) have value receivers and only read what Parse built
// (TestVersionCacheConcurrentMatches runs matches at once under -race).
//
// Installed versions go through the same cache: the same versions recur
// from image to image (a base image's packages), and parsing one is the
// same pure function.
//
// The cache is bounded in entries and in estimated bytes, per shard; a
// shard that is full is emptied and fills again with the bounds in use,
// so after a database update the old bounds do not stay forever. The
// shards keep concurrent matches from waiting on one lock.

// versionCacheShards is the number of independently locked parts.
const versionCacheShards = 32

// maxVersionCacheEntries and maxVersionCacheBytes bound the whole cache.
// A 1,000-package image of the generated full-size database (copies of
// the real records) reads 1,560 distinct bounds; the real databases have
// many more distinct versions, hence room for tens of thousands. The bytes
// are an estimate per entry (versionCacheEntryCost), which
// TestVersionCacheEntryCostCoversRealBounds holds above what real bounds
// take on the heap (about 470 bytes each, estimated 660).
const (
	maxVersionCacheEntries = 1 << 16
	maxVersionCacheBytes   = 48 << 20
)

// versionCacheEntryCost estimates the heap a cached bound holds: the
// string, the parsed form (several times the string: big.Ints, component
// slices) and the map slots.
func versionCacheEntryCost(s string) int { return 512 + 16*len(s) }

// boundCacheKey names the order a bound is parsed in.
type boundCacheKey struct {
	eco    string
	semver bool
}

// parsedBound is a range bound as parsed once: the string (for the
// event) and the parsed version, nil if it did not parse.
type parsedBound struct {
	s string
	v semantic.Version
}

// versionCache keeps parsed range bounds across matches. A nil
// *versionCache parses every bound each time it is asked.
type versionCache struct {
	seed maphash.Seed
	// maxEntries and maxBytes bound each shard (tests lower them).
	maxEntries, maxBytes int
	shards               [versionCacheShards]versionShard
}

type versionShard struct {
	mu     sync.RWMutex
	byKind map[boundCacheKey]map[string]parsedBound
	n      int // entries
	bytes  int // estimated, versionCacheEntryCost each
}

func newVersionCache() *versionCache {
	return &versionCache{
		seed:       maphash.MakeSeed(),
		maxEntries: maxVersionCacheEntries / versionCacheShards,
		maxBytes:   maxVersionCacheBytes / versionCacheShards,
	}
}

// get returns the bound b parsed for (eco, semver). The map lookup with
// string(b) does not allocate, so a bound seen before costs one shard
// read lock and no garbage.
func (c *versionCache) get(eco string, semver bool, b []byte) parsedBound {
	if c == nil {
		return parseBound(eco, semver, string(b))
	}
	sh := &c.shards[maphash.Bytes(c.seed, b)%versionCacheShards]
	sh.mu.RLock()
	pb, ok := sh.byKind[boundCacheKey{eco, semver}][string(b)]
	sh.mu.RUnlock()
	if ok {
		return pb
	}
	pb = parseBound(eco, semver, string(b))
	c.add(sh, boundCacheKey{eco, semver}, pb)
	return pb
}

// getString is get for a version held as a string.
func (c *versionCache) getString(eco string, semver bool, s string) parsedBound {
	if c == nil {
		return parseBound(eco, semver, s)
	}
	sh := &c.shards[maphash.String(c.seed, s)%versionCacheShards]
	sh.mu.RLock()
	pb, ok := sh.byKind[boundCacheKey{eco, semver}][s]
	sh.mu.RUnlock()
	if ok {
		return pb
	}
	pb = parseBound(eco, semver, s)
	c.add(sh, boundCacheKey{eco, semver}, pb)
	return pb
}

// parseBound parses s as a range of this kind orders it; a bound that
// does not parse is kept with a nil version, so it is not parsed again.
func parseBound(eco string, semver bool, s string) parsedBound {
	pb := parsedBound{s: s}
	if v, err := parseVersion(s, eco, semver); err == nil {
		pb.v = v
	}
	return pb
}

// add keeps pb, emptying the shard first when it would go past its share
// of the bounds.
func (c *versionCache) add(sh *versionShard, k boundCacheKey, pb parsedBound) {
	// A version too long to parse (from an image, say) is not kept:
	// refusing it again costs nothing.
	cost := versionCacheEntryCost(pb.s) + len(k.eco)
	if len(pb.s) > maxVersionLen || cost > c.maxBytes {
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.byKind[k][pb.s]; ok {
		return // another match parsed it meanwhile
	}
	if sh.n+1 > c.maxEntries || sh.bytes+cost > c.maxBytes {
		sh.byKind, sh.n, sh.bytes = nil, 0, 0
	}
	m := sh.byKind[k]
	if m == nil {
		if sh.byKind == nil {
			sh.byKind = map[boundCacheKey]map[string]parsedBound{}
		}
		m = map[string]parsedBound{}
		sh.byKind[k] = m
	}
	m[pb.s] = pb
	sh.n++
	sh.bytes += cost
}

// size returns the entries and estimated bytes held, for tests and
// benchmarks.
func (c *versionCache) size() (entries, bytes int) {
	if c == nil {
		return 0, 0
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		entries += sh.n
		bytes += sh.bytes
		sh.mu.RUnlock()
	}
	return entries, bytes
}
