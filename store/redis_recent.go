package store

// The index of verdicts by time in Redis: P:recent, a sorted set whose
// members all score 0 and are read by lexical range (ZRANGEBYLEX), like
// the digest index P:decided; each member is a verdict's entry (recent.go:
// its time, newest first, then digest and upstream/repository).
//
// The index is one key, so on Redis Cluster it lives in another slot
// (often on another node) than the records it lists, which share the hash
// tag of their repository: no script can write both at once. It is a view
// for the dashboard, not security state (no gate reads it), and three
// rules keep it exact where it matters, listing no verdict twice and
// missing none for good:
//   - PutDecision adds the new entry before it writes the record, and
//     removes the entry the record had (the script answers it from the
//     record's field "recent") only after the write took. A writer that
//     stops in between leaves an extra entry, never a record without one.
//   - The walk lists a record only at the entry its stored UpdatedAt
//     makes; any other entry of it (the leftover of a write cut short or
//     refused as a conflict, or one the build below added while the
//     record moved on) is skipped, so a record appears once.
//   - Nothing but a successful write removes entries, and it removes only
//     the entry of the version it replaced: a walker never deletes (it
//     could race a writer between its two steps). A leftover entry costs
//     one skipped read per walk; a re-write of the record repairs its
//     entry if anything went wrong (its own entry is added again first).
// Verdicts written before the index existed are indexed once, by the first
// walk that finds no marker key P:recent-built (ensureRecentIndex).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// DecisionsByTime implements DecisionStore: the index is read a batch at
// a time from the cursor's entry on (a lexical range, so a deep page
// reads no more than the first), and each batch's records in one round
// trip.
func (r *Redis) DecisionsByTime(ctx context.Context, after TimeCursor, fn func(DecisionRecord) bool) error {
	if err := r.ensureRecentIndex(ctx); err != nil {
		return err
	}
	from := "-"
	if k := after.key(); k != nil {
		from = "(" + string(k)
	}
	return r.eachIndexedFrom(ctx, r.keys.recentIndex(), from, func(entries []string) (bool, error) {
		pipe := r.c.Pipeline()
		cmds := make([]*redis.StringCmd, len(entries))
		for i, e := range entries {
			digest, where, err := parseRecentKey([]byte(e))
			if err != nil {
				return false, fmt.Errorf("read decisions by time: %w", err)
			}
			cmds[i] = pipe.HGet(ctx, r.keys.decision(where, digest), "record")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return false, fmt.Errorf("read decisions by time: %w", err)
		}
		for i, cmd := range cmds {
			raw, err := cmd.Bytes()
			if errors.Is(err, redis.Nil) {
				continue // indexed, never written
			}
			if err != nil {
				return false, fmt.Errorf("read decision %q: %w", entries[i], err)
			}
			var rec DecisionRecord
			if err := json.Unmarshal(raw, &rec); err != nil {
				return false, fmt.Errorf("read decision %q: stored record is not valid: %w", entries[i], err)
			}
			if string(recentKeyOf(rec)) != entries[i] {
				continue // not the record's current entry
			}
			if !fn(rec) {
				return false, nil
			}
		}
		return true, nil
	})
}

// ensureRecentIndex indexes, once per store, the verdicts written before
// the index existed: every verdict is added (adding one already there
// changes nothing), and the record's field "recent" is set where it is
// missing, so its next write removes the entry. Replicas that run it at
// once do the same work twice, harmlessly. The marker is set only when
// every verdict was added: a build cut short runs again. A replica of an
// older version still running after the build (a rolling upgrade) writes
// verdicts the index misses until they are written again by this version;
// deleting P:recent-built builds it again.
func (r *Redis) ensureRecentIndex(ctx context.Context) error {
	if r.recentBuilt.Load() {
		return nil
	}
	n, err := r.c.Exists(ctx, r.keys.recentBuilt()).Result()
	if err != nil {
		return fmt.Errorf("index verdicts by time: %w", err)
	}
	if n == 1 {
		r.recentBuilt.Store(true)
		return nil
	}
	var batch []DecisionRecord
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		pipe := r.c.Pipeline()
		for _, d := range batch {
			entry := string(recentKeyOf(d))
			pipe.ZAdd(ctx, r.keys.recentIndex(), redis.Z{Member: entry})
			pipe.HSetNX(ctx, r.keys.decision(d.Upstream+"/"+d.Repository, d.Digest), "recent", entry)
		}
		batch = batch[:0]
		_, err := pipe.Exec(ctx)
		return err
	}
	var flushErr error
	err = r.Decisions(ctx, "", func(d DecisionRecord) bool {
		if batch = append(batch, d); len(batch) == redisBatch {
			flushErr = flush()
		}
		return flushErr == nil
	})
	if err == nil {
		err = flushErr
	}
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = r.c.Set(ctx, r.keys.recentBuilt(), "1", 0).Err()
	}
	if err != nil {
		return fmt.Errorf("index verdicts by time: %w", err)
	}
	r.recentBuilt.Store(true)
	return nil
}
