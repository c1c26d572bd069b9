package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// The controls share one hash tag, so a put or delete updates a set, its
// order and the version in one script on one slot. The audit log is one
// stream.
func (k redisKeys) controls(kind string) string { return k.prefix + ":{controls}:" + kind }
func (k redisKeys) auditLog() string            { return k.prefix + ":{audit}:log" }

// putControlLua adds or replaces ARGV[1] → ARGV[2] in the hash KEYS[1]
// and its lexical order KEYS[2], unless it is new and the hash holds
// ARGV[3] entries already (0), and advances the version KEYS[3].
const putControlLua = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[3])
return 1
`

// deleteControlLua removes ARGV[1] and returns what it held (nil: none).
const deleteControlLua = `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('INCR', KEYS[3])
return v
`

func (r *Redis) controlKeys(kind string) []string {
	return []string{r.keys.controls(kind), r.keys.controls(kind + "-order"), r.keys.controls("version")}
}

func (r *Redis) putControl(ctx context.Context, kind, key string, v any, max int) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	n, err := r.putControlScript.Run(ctx, r.c, r.controlKeys(kind), key, raw, max).Int()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("%w: %d %s in force", ErrLimit, max, kind)
	}
	return nil
}

func (r *Redis) deleteControl(ctx context.Context, kind, key string, v any) error {
	raw, err := r.deleteControlScript.Run(ctx, r.c, r.controlKeys(kind), key).Text()
	if errors.Is(err, redis.Nil) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return decodeRecord([]byte(raw), v)
}

// deleteControlIf removes key when, with what it holds decoded into v,
// still() says so; errChanged when it does not. The hash is watched, so a
// put between the read and the delete makes the delete fail (and it is
// tried again, a bounded number of times).
func (r *Redis) deleteControlIf(ctx context.Context, kind, key string, v any, still func() bool) error {
	keys := r.controlKeys(kind)
	del := func(tx *redis.Tx) error {
		raw, err := tx.HGet(ctx, keys[0], key).Bytes()
		if errors.Is(err, redis.Nil) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := decodeRecord(raw, v); err != nil {
			return err
		}
		if !still() {
			return errChanged
		}
		_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.HDel(ctx, keys[0], key)
			pipe.ZRem(ctx, keys[1], key)
			pipe.Incr(ctx, keys[2])
			return nil
		})
		return err
	}
	for range 3 {
		err := r.c.Watch(ctx, del, keys[0])
		if !errors.Is(err, redis.TxFailedErr) {
			return err
		}
	}
	return fmt.Errorf("%s %s changed while being removed, three times", kind, key)
}

// eachRedisControl pages through kind's order after after, a batch at a
// time, and calls fn with each entry still in the hash.
func eachRedisControl[T any](ctx context.Context, r *Redis, kind, after string, fn func(T) bool) error {
	min := "-"
	if after != "" {
		min = "(" + after
	}
	for {
		names, err := r.c.ZRangeByLex(ctx, r.keys.controls(kind+"-order"), &redis.ZRangeBy{Min: min, Max: "+", Count: redisBatch}).Result()
		if err != nil {
			return err
		}
		if len(names) == 0 {
			return nil
		}
		vals, err := r.c.HMGet(ctx, r.keys.controls(kind), names...).Result()
		if err != nil {
			return err
		}
		for i, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue // removed between the two reads
			}
			var x T
			if err := decodeRecord([]byte(s), &x); err != nil {
				return fmt.Errorf("%s %s: %w", kind, names[i], err)
			}
			if !fn(x) {
				return nil
			}
		}
		min = "(" + names[len(names)-1]
	}
}

// PutQuarantine implements ControlStore.
func (r *Redis) PutQuarantine(ctx context.Context, q Quarantine) error {
	if err := r.putControl(ctx, "quarantines", q.Digest, q, MaxQuarantines); err != nil {
		return fmt.Errorf("write quarantine of %s: %w", q.Digest, err)
	}
	return nil
}

// DeleteQuarantine implements ControlStore.
func (r *Redis) DeleteQuarantine(ctx context.Context, digest string) (Quarantine, error) {
	var q Quarantine
	if err := r.deleteControl(ctx, "quarantines", digest, &q); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Quarantine{}, ErrNotFound
		}
		return Quarantine{}, fmt.Errorf("lift quarantine of %s: %w", digest, err)
	}
	return q, nil
}

// DeleteQuarantineIf implements ControlStore.
func (r *Redis) DeleteQuarantineIf(ctx context.Context, q Quarantine) (bool, error) {
	var held Quarantine
	err := r.deleteControlIf(ctx, "quarantines", q.Digest, &held, func() bool { return SameQuarantine(held, q) })
	return deletedIf(err, "lift quarantine of "+q.Digest)
}

// Quarantines implements ControlStore.
func (r *Redis) Quarantines(ctx context.Context, after string, fn func(Quarantine) bool) error {
	if err := eachRedisControl(ctx, r, "quarantines", after, fn); err != nil {
		return fmt.Errorf("read quarantines: %w", err)
	}
	return nil
}

// PutException implements ControlStore.
func (r *Redis) PutException(ctx context.Context, e Exception) error {
	if err := r.putControl(ctx, "exceptions", e.ID, e, MaxExceptions); err != nil {
		return fmt.Errorf("write exception %s: %w", e.ID, err)
	}
	return nil
}

// DeleteException implements ControlStore.
func (r *Redis) DeleteException(ctx context.Context, id string) (Exception, error) {
	var e Exception
	if err := r.deleteControl(ctx, "exceptions", id, &e); err != nil {
		if errors.Is(err, ErrNotFound) {
			return Exception{}, ErrNotFound
		}
		return Exception{}, fmt.Errorf("remove exception %s: %w", id, err)
	}
	return e, nil
}

// DeleteExceptionIf implements ControlStore.
func (r *Redis) DeleteExceptionIf(ctx context.Context, e Exception) (bool, error) {
	var held Exception
	err := r.deleteControlIf(ctx, "exceptions", e.ID, &held, func() bool { return SameException(held, e) })
	return deletedIf(err, "remove exception "+e.ID)
}

// Exceptions implements ControlStore.
func (r *Redis) Exceptions(ctx context.Context, after string, fn func(Exception) bool) error {
	if err := eachRedisControl(ctx, r, "exceptions", after, fn); err != nil {
		return fmt.Errorf("read exceptions: %w", err)
	}
	return nil
}

// ControlsVersion implements ControlStore.
func (r *Redis) ControlsVersion(ctx context.Context) (uint64, error) {
	v, err := r.c.Get(ctx, r.keys.controls("version")).Uint64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read controls version: %w", err)
	}
	return v, nil
}

// streamID is the form of the IDs Redis gives stream entries.
var streamID = regexp.MustCompile(`^[0-9]{1,20}-[0-9]{1,20}$`)

// AppendAudit implements AuditStore: the stream keeps about
// MaxAuditRecords (Redis trims whole nodes, so a few more).
func (r *Redis) AppendAudit(ctx context.Context, rec *AuditRecord) error {
	if rec.At.IsZero() {
		rec.At = time.Now()
	}
	rec.ID = ""
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	id, err := r.c.XAdd(ctx, &redis.XAddArgs{Stream: r.keys.auditLog(), MaxLen: MaxAuditRecords, Approx: true, Values: []any{"r", raw}}).Result()
	if err != nil {
		return fmt.Errorf("append audit record %s: %w", rec.Kind, err)
	}
	rec.ID = id
	return nil
}

// Audit implements AuditStore. Entries are ordered by the time Redis
// appended them; Since compares the record's own time.
func (r *Redis) Audit(ctx context.Context, q AuditQuery, fn func(AuditRecord) bool) error {
	start := "-"
	if !q.Since.IsZero() {
		// A record's time is its writer's; the stream's, Redis'. Start a
		// minute early for clocks apart, and filter on the record's.
		start = strconv.FormatInt(max(q.Since.Add(-time.Minute).UnixMilli(), 0), 10)
	}
	if q.After != "" {
		if !streamID.MatchString(q.After) {
			return fmt.Errorf("read audit log: cursor %q is not one this store made", q.After)
		}
		start = "(" + q.After
	}
	for {
		entries, err := r.c.XRangeN(ctx, r.keys.auditLog(), start, "+", redisBatch).Result()
		if err != nil {
			return fmt.Errorf("read audit log: %w", err)
		}
		if len(entries) == 0 {
			return nil
		}
		for _, e := range entries {
			raw, _ := e.Values["r"].(string)
			var rec AuditRecord
			if err := decodeRecord([]byte(raw), &rec); err != nil {
				return fmt.Errorf("read audit log: record %s: %w", e.ID, err)
			}
			rec.ID = e.ID
			if (q.Kind != "" && rec.Kind != q.Kind) || rec.At.Before(q.Since) {
				continue
			}
			if !fn(rec) {
				return nil
			}
		}
		start = "(" + entries[len(entries)-1].ID
	}
}
