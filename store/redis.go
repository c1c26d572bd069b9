package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Redis is the shared Store: every replica of a cluster reads and writes
// the same state. Key design (README, "State in Redis"): every operation
// that must be atomic over several keys runs as one Lua script on keys that
// share a hash tag, so it works on Redis Cluster too; indexes that span
// digests are single keys written before the records they list, so a
// reader may find an index entry without its record (skipped) but never a
// record its index misses.
type Redis struct {
	c    redis.UniversalClient
	keys redisKeys
	// Scripts are immutable once made; kept here rather than in package
	// variables.
	casScan, casDecision, linkBlob, blobImages, replaceSet *redis.Script
	putControlScript, deleteControlScript                  *redis.Script
	// recentBuilt caches that the index by time was found built.
	recentBuilt atomic.Bool
}

// DefaultRedisPrefix starts every key Portcullis writes to Redis.
const DefaultRedisPrefix = "portcullis"

// redisBatch is how many entries one SCAN-family or range call asks for:
// iterations over sets that outside input can grow hold one batch at a
// time, never the whole set.
const redisBatch = 100

// NewRedis returns a Store on c, with every key under prefix (empty:
// DefaultRedisPrefix). The prefix must not contain braces: they would
// become the hash tag of every key. Closing the Store closes c.
func NewRedis(c redis.UniversalClient, prefix string) (*Redis, error) {
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("redis key prefix %q: must not contain { or }", prefix)
	}
	return &Redis{
		c:                   c,
		keys:                redisKeys{prefix: prefix},
		casScan:             redis.NewScript(casScanLua),
		casDecision:         redis.NewScript(casDecisionLua),
		linkBlob:            redis.NewScript(linkBlobLua),
		blobImages:          redis.NewScript(blobImagesLua),
		replaceSet:          redis.NewScript(replaceSetLua),
		putControlScript:    redis.NewScript(putControlLua),
		deleteControlScript: redis.NewScript(deleteControlLua),
	}, nil
}

// redisKeys builds every key; the README table lists them.
type redisKeys struct{ prefix string }

// hashTag returns what goes between the braces of a key's hash tag: s
// itself, or, when s is empty or holds a brace (which would end the tag
// early and split one record's keys over several slots), a hash of it.
func hashTag(s string) string {
	if s != "" && !strings.ContainsAny(s, "{}") {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "h:" + hex.EncodeToString(sum[:16])
}

func (k redisKeys) tagged(tag, kind string) string {
	return k.prefix + ":{" + hashTag(tag) + "}:" + kind
}

func (k redisKeys) tag(key string) string      { return k.prefix + ":tag:" + key }
func (k redisKeys) localTag(tag string) string { return k.prefix + ":localtag:" + tag }
func (k redisKeys) scan(digest string) string  { return k.tagged(digest, "scan") }
func (k redisKeys) scanIndex() string          { return k.prefix + ":scans" }

// A repository's verdicts and relations share the hash tag {W} (W is
// upstream/repo): the blob gate reads an image set and the verdicts of its
// images in one script, one round trip, which Redis Cluster allows only on
// one slot. The tag ends at the first '}', which hashTag never holds, so
// the rest of the key (a digest) cannot shift it: different (W, digest)
// pairs get different keys whatever the names hold.
func (k redisKeys) decision(where, digest string) string {
	return k.tagged(where, "decision:"+digest)
}
func (k redisKeys) verdicts(where string) string { return k.tagged(where, "verdicts") }
func (k redisKeys) blobImages(where, blob string) string {
	return k.tagged(where, "images:"+blob)
}
func (k redisKeys) blobLink(where, blob string) string {
	return k.tagged(where, "link:"+blob)
}
func (k redisKeys) parents(where, child string) string {
	return k.tagged(where, "parents:"+child)
}

// Indexes of verdicts across repositories, written before the records:
// every digest with a verdict, and per digest the repositories with one.
func (k redisKeys) decidedIndex() string { return k.prefix + ":decided" }

// The index of verdicts by time (recent.go, redis_recent.go), and the
// marker that it was built for the verdicts written before it existed.
func (k redisKeys) recentIndex() string { return k.prefix + ":recent" }
func (k redisKeys) recentBuilt() string { return k.prefix + ":recent-built" }
func (k redisKeys) decidedIn(digest string) string {
	return k.tagged(digest, "decided-in")
}

// Published artifacts share one hash tag: replacing a subject's set moves
// reference counts of contents other subjects share, atomically.
func (k redisKeys) referrers(subject string) string {
	return k.prefix + ":{artifacts}:referrers:" + subject
}
func (k redisKeys) contents() string    { return k.prefix + ":{artifacts}:contents" }
func (k redisKeys) contentRefs() string { return k.prefix + ":{artifacts}:content-refs" }

// getJSON reads key into v; a missing key is ErrNotFound.
func (r *Redis) getJSON(ctx context.Context, key string, v any) error {
	raw, err := r.c.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("stored value is not valid: %w", err)
	}
	return nil
}

// Tag implements Store.
func (r *Redis) Tag(ctx context.Context, key string) (TagEntry, error) {
	var e TagEntry
	err := r.getJSON(ctx, r.keys.tag(key), &e)
	if errors.Is(err, ErrNotFound) {
		return TagEntry{}, err
	}
	if err != nil {
		return TagEntry{}, fmt.Errorf("read tag %s: %w", key, err)
	}
	return e, nil
}

// PutTag implements Store.
func (r *Redis) PutTag(ctx context.Context, key string, e TagEntry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("write tag %s: %w", key, err)
	}
	if err := r.c.Set(ctx, r.keys.tag(key), v, 0).Err(); err != nil {
		return fmt.Errorf("write tag %s: %w", key, err)
	}
	return nil
}

// PutLocalTag implements ArtifactStore.
func (r *Redis) PutLocalTag(ctx context.Context, tag, digest string) error {
	if err := r.c.Set(ctx, r.keys.localTag(tag), digest, 0).Err(); err != nil {
		return fmt.Errorf("write local tag %s: %w", tag, err)
	}
	return nil
}

// LocalTag implements ArtifactStore.
func (r *Redis) LocalTag(ctx context.Context, tag string) (string, error) {
	d, err := r.c.Get(ctx, r.keys.localTag(tag)).Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", fmt.Errorf("read local tag %s: %w", tag, err)
	}
	return d, nil
}

// Close implements Store.
func (r *Redis) Close() error { return r.c.Close() }

// casResult reads what the compare-and-swap scripts return: {1, revision}
// when written (a script may answer more after it), {0, stored revision}
// when the record had changed.
func casResult(res any) (ok bool, stored string, err error) {
	parts, isSlice := res.([]any)
	if !isSlice || len(parts) < 2 {
		return false, "", fmt.Errorf("unexpected script answer %v", res)
	}
	n, _ := parts[0].(int64)
	s, _ := parts[1].(string)
	return n == 1, s, nil
}
