package store

// Redis keys of a RedisQueue (P: the store's key prefix, N: the queue
// name). All carry the hash tag {q:N}, so the scripts that touch several
// of them run on one Redis Cluster slot.
//
//	P queue:{q:N}:stream     stream of jobs (fields k: key, p: payload), consumer group "workers"
//	P queue:{q:N}:marks      hash key → entry id: the dedupe marks, one per job not done
//	P queue:{q:N}:deadlines  sorted set entry id → lease deadline (ms, Redis server clock)
//	P queue:{q:N}:holders    hash entry id → "attempt|consumer" of the current claim
//	P queue:{q:N}:wake       list of at most 64 tokens, pushed per enqueue, popped by waiting claims
//
// No TTLs: a job lives until Done. The group's pending entries list counts
// deliveries; who holds a job, and until when, is in holders and
// deadlines, because a lease is set per claim (Claim's lease argument) and
// the stream's idle time cannot say whose lease ran out when leases differ.
// All reads of the group go through one Redis consumer name, so replicas
// coming and going leave no consumers behind in the group.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	redisQueueGroup    = "workers"
	redisQueueConsumer = "portcullis"
	// redisReclaimScan bounds the expired claims one Claim looks at whose
	// entries turn out to be gone.
	redisReclaimScan = 16
	redisWakeTokens  = 64
)

// RedisQueue is the Queue on Redis Streams with a consumer group, shared
// by every replica. Leases run on the Redis server's clock. The client's
// ReadTimeout must exceed one second (go-redis' default is 3 s): a waiting
// Claim blocks on the server for up to that long, so it also notices a
// cancelled context within about a second.
type RedisQueue struct {
	c                                     redis.UniversalClient
	name                                  string
	stream, marks, deadlines, holders, wk string
	cfg                                   queueConfig
	enqueue, claim, extend, done          *redis.Script
}

// NewRedisQueue returns the queue called name under prefix.
func NewRedisQueue(c redis.UniversalClient, prefix, name string, opts ...QueueOption) (*RedisQueue, error) {
	if name == "" || len(name) > maxQueueNameLen {
		return nil, fmt.Errorf("queue name of %d bytes: want 1 to %d", len(name), maxQueueNameLen)
	}
	k := prefix + "queue:{q:" + name + "}:"
	return &RedisQueue{
		c: c, name: name, cfg: newQueueConfig(opts),
		stream: k + "stream", marks: k + "marks", deadlines: k + "deadlines", holders: k + "holders", wk: k + "wake",
		enqueue: redis.NewScript(redisEnqueueScript),
		claim:   redis.NewScript(redisClaimScript),
		extend:  redis.NewScript(redisExtendScript),
		done:    redis.NewScript(redisDoneScript),
	}, nil
}

// KEYS: stream, marks, wake. ARGV: group, key, payload, max jobs, max tokens.
// Returns 1 added, 0 already there, -1 full.
const redisEnqueueScript = `
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 1 then return 0 end
if redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[4]) then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
end
local id = redis.call('XADD', KEYS[1], '*', 'k', ARGV[2], 'p', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[2], id)
redis.call('LPUSH', KEYS[3], '1')
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
return 1
`

// KEYS: stream, deadlines, holders. ARGV: group, group consumer, consumer,
// lease ms, reclaim scan bound. Returns {1, id, fields, attempt} or
// {0, ms until the earliest lease runs out (-1: none)}.
const redisClaimScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function hand(id, fields, attempt)
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), id)
  redis.call('HSET', KEYS[3], id, attempt .. '|' .. ARGV[3])
  return {1, id, fields, attempt}
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, -1} end
for i = 1, tonumber(ARGV[5]) do
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1)
  if #due == 0 then break end
  local id = due[1]
  local got = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)
  if #got == 0 or not got[1] or not got[1][2] then
    redis.call('ZREM', KEYS[2], id)
    redis.call('HDEL', KEYS[3], id)
    redis.call('XACK', KEYS[1], ARGV[1], id)
  else
    local attempt = 1
    local h = redis.call('HGET', KEYS[3], id)
    if h then attempt = (tonumber(string.match(h, '^(%d+)|')) or 0) + 1 end
    return hand(id, got[1][2], attempt)
  end
end
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
if r and r[1] and r[1][2][1] then
  local e = r[1][2][1]
  return hand(e[1], e[2], 1)
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #first == 0 then return {0, -1} end
return {0, math.max(tonumber(first[2]) - now, 0)}
`

// KEYS: deadlines, holders. ARGV: id, holder, lease ms. Returns 1, or 0
// when the claim is not the holder's any more.
const redisExtendScript = `
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
`

// KEYS: stream, marks, deadlines, holders. ARGV: group, id, holder, key.
const redisDoneScript = `
if redis.call('HGET', KEYS[4], ARGV[2]) ~= ARGV[3] then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[2])
if redis.call('HGET', KEYS[2], ARGV[4]) == ARGV[2] then redis.call('HDEL', KEYS[2], ARGV[4]) end
return 1
`

// Enqueue implements Queue.
func (q *RedisQueue) Enqueue(ctx context.Context, key string, payload []byte) (bool, error) {
	if err := checkEnqueue(key, payload); err != nil {
		return false, fmt.Errorf("enqueue on %s: %w", q.name, err)
	}
	n, err := q.enqueue.Run(ctx, q.c, []string{q.stream, q.marks, q.wk},
		redisQueueGroup, key, payload, q.cfg.maxJobs, redisWakeTokens).Int()
	switch {
	case err != nil:
		return false, fmt.Errorf("enqueue %s on %s: %w", key, q.name, err)
	case n < 0:
		return false, fmt.Errorf("enqueue %s on %s: %w", key, q.name, ErrQueueFull)
	}
	return n == 1, nil
}

// Claim implements Queue.
func (q *RedisQueue) Claim(ctx context.Context, consumer string, lease, wait time.Duration) (Job, error) {
	if err := checkClaim(consumer, lease, wait); err != nil {
		return Job{}, fmt.Errorf("claim on %s: %w", q.name, err)
	}
	end := time.Now().Add(wait)
	for {
		j, next, haveNext, err := q.claimOnce(ctx, consumer, lease)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return j, err
		}
		left := time.Until(end)
		if left <= 0 {
			return Job{}, ErrNotFound
		}
		// Sleep on the server until an enqueue pushes a wake token, the
		// earliest lease runs out or the poll ends. BLPOP takes seconds
		// with decimals; go-redis' BLPop would round them up to 1 s.
		d := claimPoll(left, next, haveNext)
		err = q.c.Do(ctx, "blpop", q.wk, strconv.FormatFloat(d.Seconds(), 'f', 3, 64)).Err()
		if err != nil && !errors.Is(err, redis.Nil) {
			if ctx.Err() != nil {
				return Job{}, fmt.Errorf("claim on %s: %w", q.name, ctx.Err())
			}
			return Job{}, fmt.Errorf("claim on %s: wait: %w", q.name, err)
		}
	}
}

func (q *RedisQueue) claimOnce(ctx context.Context, consumer string, lease time.Duration) (Job, time.Duration, bool, error) {
	res, err := q.claim.Run(ctx, q.c, []string{q.stream, q.deadlines, q.holders},
		redisQueueGroup, redisQueueConsumer, consumer, lease.Milliseconds(), redisReclaimScan).Slice()
	if err != nil {
		return Job{}, 0, false, fmt.Errorf("claim on %s: %w", q.name, err)
	}
	if len(res) < 2 {
		return Job{}, 0, false, fmt.Errorf("claim on %s: reply of %d elements", q.name, len(res))
	}
	if ok, _ := res[0].(int64); ok != 1 {
		ms, _ := res[1].(int64)
		return Job{}, time.Duration(ms) * time.Millisecond, ms >= 0, ErrNotFound
	}
	if len(res) != 4 {
		return Job{}, 0, false, fmt.Errorf("claim on %s: reply of %d elements", q.name, len(res))
	}
	id, _ := res[1].(string)
	fields, _ := res[2].([]any)
	attempt, _ := res[3].(int64)
	j := Job{Attempt: int(attempt), id: id, consumer: consumer}
	for i := 0; i+1 < len(fields); i += 2 {
		name, _ := fields[i].(string)
		value, _ := fields[i+1].(string)
		switch name {
		case "k":
			j.Key = value
		case "p":
			if value != "" {
				j.Payload = []byte(value)
			}
		}
	}
	if id == "" || j.Key == "" || attempt < 1 {
		return Job{}, 0, false, fmt.Errorf("claim on %s: malformed entry %q", q.name, id)
	}
	return j, 0, false, nil
}

func redisHolder(j Job) string { return strconv.Itoa(j.Attempt) + "|" + j.consumer }

// Extend implements Queue. A claim whose lease ran out but that nobody
// took over yet is still its holder's, and can be extended.
func (q *RedisQueue) Extend(ctx context.Context, j Job, lease time.Duration) error {
	if lease < minLeaseDuration {
		return fmt.Errorf("extend %s on %s: lease %v: at least %v", j.Key, q.name, lease, minLeaseDuration)
	}
	ok, err := q.extend.Run(ctx, q.c, []string{q.deadlines, q.holders}, j.id, redisHolder(j), lease.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("extend %s on %s: %w", j.Key, q.name, err)
	}
	if ok != 1 {
		return fmt.Errorf("extend %s on %s: no longer held by %s (attempt %d): %w", j.Key, q.name, j.consumer, j.Attempt, ErrConflict)
	}
	return nil
}

// Done implements Queue.
func (q *RedisQueue) Done(ctx context.Context, j Job) error {
	ok, err := q.done.Run(ctx, q.c, []string{q.stream, q.marks, q.deadlines, q.holders},
		redisQueueGroup, j.id, redisHolder(j), j.Key).Int()
	if err != nil {
		return fmt.Errorf("finish %s on %s: %w", j.Key, q.name, err)
	}
	if ok != 1 {
		return fmt.Errorf("finish %s on %s: no longer held by %s (attempt %d): %w", j.Key, q.name, j.consumer, j.Attempt, ErrConflict)
	}
	return nil
}

// Len implements Queue.
func (q *RedisQueue) Len(ctx context.Context) (int64, error) {
	n, err := q.c.HLen(ctx, q.marks).Result()
	if err != nil {
		return 0, fmt.Errorf("length of %s: %w", q.name, err)
	}
	return n, nil
}
