package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// replaceSetLua replaces a subject's referrer set if it is still the one
// read, writes the contents it brings and moves reference counts; content
// no set keeps any more is deleted. KEYS: the subject's set, the contents
// hash, the reference counts hash (one hash tag). ARGV: the set as read
// ("" when absent), the next set, then a count and that many digest/content
// pairs, then a count and the digests gaining a reference, then a count
// and the digests losing one.
const replaceSetLua = `
local cur = redis.call('GET', KEYS[1]) or ''
if cur ~= ARGV[1] then return 0 end
local i = 3
local n = tonumber(ARGV[i])
for j = 1, n do
  redis.call('HSET', KEYS[2], ARGV[i + 2*j - 1], ARGV[i + 2*j])
end
i = i + 2*n + 1
n = tonumber(ARGV[i])
for j = 1, n do
  redis.call('HINCRBY', KEYS[3], ARGV[i + j], 1)
end
i = i + n + 1
n = tonumber(ARGV[i])
for j = 1, n do
  local d = ARGV[i + j]
  if redis.call('HINCRBY', KEYS[3], d, -1) <= 0 then
    redis.call('HDEL', KEYS[3], d)
    redis.call('HDEL', KEYS[2], d)
  end
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`

// maxSetAttempts bounds the compare-and-swap retries of one change to a
// subject's set; only writers of the same subject compete.
const maxSetAttempts = 16

// PutReferrers implements ArtifactStore.
func (r *Redis) PutReferrers(ctx context.Context, subject string, descriptors []json.RawMessage, contents map[string]Content) error {
	next := referrerSet{Descriptors: descriptors, Contents: slices.Sorted(maps.Keys(contents))}
	err := r.updateSet(ctx, subject, contents, func(referrerSet) (referrerSet, bool) { return next, true })
	if err != nil {
		return fmt.Errorf("write referrers of %s: %w", subject, err)
	}
	return nil
}

// AddContents implements ArtifactStore.
func (r *Redis) AddContents(ctx context.Context, subject string, contents map[string]Content) error {
	group := slices.Sorted(maps.Keys(contents))
	err := r.updateSet(ctx, subject, contents, func(old referrerSet) (referrerSet, bool) {
		if len(old.Added) > 0 && slices.Equal(old.Added[len(old.Added)-1], group) {
			// The same composition served again: nothing to write.
			return old, false
		}
		next := old
		next.Added = slices.DeleteFunc(slices.Clone(old.Added), func(g []string) bool { return slices.Equal(g, group) })
		next.Added = append(next.Added, group)
		if n := len(next.Added) - maxAddedGroups; n > 0 {
			next.Added = next.Added[n:]
		}
		return next, true
	})
	if err != nil {
		return fmt.Errorf("add content for %s: %w", subject, err)
	}
	return nil
}

// updateSet reads subject's set, asks change for the next one, and
// writes it with contents if the set did not change meanwhile, retrying a
// bounded number of times.
func (r *Redis) updateSet(ctx context.Context, subject string, contents map[string]Content, change func(referrerSet) (referrerSet, bool)) error {
	keys := []string{r.keys.referrers(subject), r.keys.contents(), r.keys.contentRefs()}
	encoded := make([]any, 0, 2*len(contents))
	for _, d := range slices.Sorted(maps.Keys(contents)) {
		raw, err := json.Marshal(contents[d])
		if err != nil {
			return err
		}
		encoded = append(encoded, d, raw)
	}
	for range maxSetAttempts {
		raw, err := r.c.Get(ctx, keys[0]).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		var old referrerSet
		if raw != "" {
			if err := json.Unmarshal([]byte(raw), &old); err != nil {
				return fmt.Errorf("stored referrers are not valid: %w", err)
			}
		}
		next, write := change(old)
		if !write {
			return nil
		}
		nextRaw, err := json.Marshal(next)
		if err != nil {
			return err
		}
		was, is := old.digests(), next.digests()
		var gained, lost []string
		for d := range is {
			if !was[d] {
				gained = append(gained, d)
			}
		}
		for d := range was {
			if !is[d] {
				lost = append(lost, d)
			}
		}
		args := make([]any, 0, 5+len(encoded)+len(gained)+len(lost))
		args = append(args, raw, nextRaw, strconv.Itoa(len(encoded)/2))
		args = append(args, encoded...)
		args = append(args, strconv.Itoa(len(gained)))
		for _, d := range gained {
			args = append(args, d)
		}
		args = append(args, strconv.Itoa(len(lost)))
		for _, d := range lost {
			args = append(args, d)
		}
		written, err := r.replaceSet.Run(ctx, r.c, keys, args...).Int()
		if err != nil {
			return err
		}
		if written == 1 {
			return nil
		}
	}
	return fmt.Errorf("changed by others %d times while writing: %w", maxSetAttempts, ErrConflict)
}

// Referrers implements ArtifactStore.
func (r *Redis) Referrers(ctx context.Context, subject string) ([]json.RawMessage, error) {
	var set referrerSet
	err := r.getJSON(ctx, r.keys.referrers(subject), &set)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("read referrers of %s: %w", subject, err)
	}
	return set.Descriptors, nil
}

// Content implements ArtifactStore.
func (r *Redis) Content(ctx context.Context, digest string) (Content, error) {
	raw, err := r.c.HGet(ctx, r.keys.contents(), digest).Bytes()
	if errors.Is(err, redis.Nil) {
		return Content{}, ErrNotFound
	}
	if err != nil {
		return Content{}, fmt.Errorf("read content %s: %w", digest, err)
	}
	var c Content
	if err := json.Unmarshal(raw, &c); err != nil {
		return Content{}, fmt.Errorf("read content %s: stored content is not valid: %w", digest, err)
	}
	return c, nil
}
