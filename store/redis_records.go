package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// casScanLua writes a scan record if its stored revision is still the one
// it was read at. KEYS[1]: the record's hash (fields revision, record).
// ARGV: read revision, next revision, record JSON.
const casScanLua = `
local stored = redis.call('HGET', KEYS[1], 'revision') or '0'
if stored ~= ARGV[1] then return {0, stored} end
redis.call('HSET', KEYS[1], 'revision', ARGV[2], 'record', ARGV[3])
redis.call('HDEL', KEYS[1], 'matched', 'result')
return {1, ARGV[2]}
`

// markScanLua writes a match mark on a scan record still at the marked
// revision: a same-findings mark in field matched, a new result in field
// result (which ends the same-findings mark before it). KEYS[1]: the
// record's hash. ARGV: revision, field, mark.
const markScanLua = `
if redis.call('HGET', KEYS[1], 'revision') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
if ARGV[2] == 'result' then redis.call('HDEL', KEYS[1], 'matched') end
return 1
`

// casDecisionLua does the same for one verdict, and keeps its effective
// verdict in the repository's verdicts hash, which the blob gate reads.
// KEYS: the record's hash (fields revision, record, recent) and the
// repository's verdicts hash (one hash tag, {upstream/repo}). ARGV:
// digest, read revision, next revision, record JSON, verdict, the
// record's entry in the index by time. A write answers, third, the entry
// of the record it replaced ("": none known).
const casDecisionLua = `
local stored = redis.call('HGET', KEYS[1], 'revision') or '0'
if stored ~= ARGV[2] then return {0, stored} end
local old = redis.call('HGET', KEYS[1], 'recent') or ''
redis.call('HSET', KEYS[1], 'revision', ARGV[3], 'record', ARGV[4], 'recent', ARGV[6])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
return {1, ARGV[3], old}
`

// Scan implements ScanStore.
func (r *Redis) Scan(ctx context.Context, digest string) (ScanRecord, error) {
	return r.scan(ctx, digest, true)
}

// ScanWithoutInventory implements InventorySkipper.
func (r *Redis) ScanWithoutInventory(ctx context.Context, digest string) (ScanRecord, error) {
	return r.scan(ctx, digest, false)
}

func (r *Redis) scan(ctx context.Context, digest string, withInventory bool) (ScanRecord, error) {
	vals, err := r.c.HMGet(ctx, r.keys.scan(digest), "record", "result", "matched").Result()
	if err != nil {
		return ScanRecord{}, fmt.Errorf("read scan %s: %w", digest, err)
	}
	raw, ok := vals[0].(string)
	if !ok {
		return ScanRecord{}, ErrNotFound
	}
	var rec ScanRecord
	var into any = &rec
	if !withInventory {
		into = &recordWithoutInventory{ScanRecord: &rec}
	}
	if err := json.Unmarshal([]byte(raw), into); err != nil {
		return ScanRecord{}, fmt.Errorf("read scan %s: stored record is not valid: %w", digest, err)
	}
	applyRecordMarks(&rec, redisMarkJSON(vals[1]), redisMarkJSON(vals[2]))
	return rec, nil
}

// MarkMatched implements MatchMarker: the batch in one pipeline, each mark
// written only on a record still at its revision.
func (r *Redis) MarkMatched(ctx context.Context, marks []MatchMark) ([]MatchMark, error) {
	if err := checkMarks(marks); err != nil {
		return nil, err
	}
	if len(marks) == 0 {
		return nil, nil
	}
	pipe := r.c.Pipeline()
	cmds := make([]*redis.Cmd, len(marks))
	for i, m := range marks {
		v, err := encodeRedisMark(m)
		if err != nil {
			return nil, fmt.Errorf("mark matched scan %s: %w", m.Digest, err)
		}
		field := "matched"
		if m.Result != nil {
			field = "result"
		}
		// EVAL rather than EVALSHA: a pipeline does not retry a script
		// the server has not loaded.
		cmds[i] = pipe.Eval(ctx, markScanLua, []string{r.keys.scan(m.Digest)}, strconv.FormatUint(m.Revision, 10), field, v)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("mark %d matched scans: %w", len(marks), err)
	}
	var dropped []MatchMark
	for i, cmd := range cmds {
		if n, err := cmd.Int(); err != nil || n != 1 {
			dropped = append(dropped, marks[i])
		}
	}
	return dropped, nil
}

// PutScan implements ScanStore.
func (r *Redis) PutScan(ctx context.Context, rec *ScanRecord) error {
	next := *rec
	next.Revision++
	v, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("write scan %s: %w", rec.Digest, err)
	}
	// The index first: a failure after it leaves an entry Scans skips,
	// never a record Scans cannot find.
	if err := r.c.ZAdd(ctx, r.keys.scanIndex(), redis.Z{Member: rec.Digest}).Err(); err != nil {
		return fmt.Errorf("write scan %s: index: %w", rec.Digest, err)
	}
	res, err := r.casScan.Run(ctx, r.c, []string{r.keys.scan(rec.Digest)},
		strconv.FormatUint(rec.Revision, 10), strconv.FormatUint(next.Revision, 10), v).Result()
	if err != nil {
		return fmt.Errorf("write scan %s: %w", rec.Digest, err)
	}
	ok, stored, err := casResult(res)
	if err != nil {
		return fmt.Errorf("write scan %s: %w", rec.Digest, err)
	}
	if !ok {
		return fmt.Errorf("write scan %s: stored at revision %s, written from %d: %w", rec.Digest, stored, rec.Revision, ErrConflict)
	}
	rec.Revision = next.Revision
	return nil
}

// Scans implements ScanStore: the index is read a batch at a time, in
// digest order, and each batch's records in one round trip.
func (r *Redis) Scans(ctx context.Context, fn func(ScanRecord) bool) error {
	return r.scans(ctx, fn, true)
}

// ScansWithoutInventory implements InventorySkipper.
func (r *Redis) ScansWithoutInventory(ctx context.Context, fn func(ScanRecord) bool) error {
	return r.scans(ctx, fn, false)
}

func (r *Redis) scans(ctx context.Context, fn func(ScanRecord) bool, withInventory bool) error {
	return r.eachScanHash(ctx, []string{"record", "result", "matched"}, func(d, raw string, vals []any) (bool, error) {
		var rec ScanRecord
		var into any = &rec
		if !withInventory {
			into = &recordWithoutInventory{ScanRecord: &rec}
		}
		if err := json.Unmarshal([]byte(raw), into); err != nil {
			return false, fmt.Errorf("read scan %s: stored record is not valid: %w", d, err)
		}
		applyRecordMarks(&rec, redisMarkJSON(vals[1]), redisMarkJSON(vals[2]))
		return fn(rec), nil
	})
}

// ScanFindings implements ScanStore.
func (r *Redis) ScanFindings(ctx context.Context, fn func(ScanFindings) bool) error {
	return r.eachScanHash(ctx, []string{"record", "revision", "result"}, func(d, raw string, vals []any) (bool, error) {
		var rec ScanFindings
		if err := json.Unmarshal([]byte(raw), &rec); err != nil {
			return false, fmt.Errorf("read scan %s: stored record is not valid: %w", d, err)
		}
		if result := redisMarkJSON(vals[2]); result != nil {
			rev, _ := vals[1].(string)
			if n, err := strconv.ParseUint(rev, 10, 64); err == nil {
				applyFindingsMarks(&rec, n, result)
			}
		}
		return fn(rec), nil
	})
}

// eachScanHash walks the scan index a batch at a time and reads fields
// (the first is "record") of each batch's scan hashes in one round trip,
// calling each with the digest, the stored record and every field's value,
// until it returns false. A digest indexed but never written is skipped.
func (r *Redis) eachScanHash(ctx context.Context, fields []string, each func(d, raw string, vals []any) (bool, error)) error {
	return r.eachIndexed(ctx, r.keys.scanIndex(), func(digests []string) (bool, error) {
		pipe := r.c.Pipeline()
		cmds := make([]*redis.SliceCmd, len(digests))
		for i, d := range digests {
			cmds[i] = pipe.HMGet(ctx, r.keys.scan(d), fields...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return false, fmt.Errorf("read scans: %w", err)
		}
		for i, cmd := range cmds {
			vals, err := cmd.Result()
			if err != nil {
				return false, fmt.Errorf("read scan %s: %w", digests[i], err)
			}
			raw, ok := vals[0].(string)
			if !ok {
				continue // indexed, never written
			}
			if more, err := each(digests[i], raw, vals); err != nil || !more {
				return false, err
			}
		}
		return true, nil
	})
}

// eachIndexed calls batch with the members of the sorted set index, in
// lexical order, redisBatch at a time, until it returns false.
func (r *Redis) eachIndexed(ctx context.Context, index string, batch func([]string) (bool, error)) error {
	return r.eachIndexedFrom(ctx, index, "-", batch)
}

// eachIndexedFrom is eachIndexed from the lexical range bound from on.
func (r *Redis) eachIndexedFrom(ctx context.Context, index, from string, batch func([]string) (bool, error)) error {
	for {
		members, err := r.c.ZRangeByLex(ctx, index, &redis.ZRangeBy{Min: from, Max: "+", Count: redisBatch}).Result()
		if err != nil {
			return fmt.Errorf("read index %s: %w", index, err)
		}
		if len(members) == 0 {
			return nil
		}
		more, err := batch(members)
		if err != nil || !more || len(members) < redisBatch {
			return err
		}
		from = "(" + members[len(members)-1]
	}
}

// Decision implements DecisionStore.
func (r *Redis) Decision(ctx context.Context, digest, upstream, repo string) (DecisionRecord, error) {
	where := upstream + "/" + repo
	raw, err := r.c.HGet(ctx, r.keys.decision(where, digest), "record").Bytes()
	if errors.Is(err, redis.Nil) {
		return DecisionRecord{}, ErrNotFound
	}
	if err != nil {
		return DecisionRecord{}, fmt.Errorf("read decision on %s in %s: %w", digest, where, err)
	}
	var rec DecisionRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return DecisionRecord{}, fmt.Errorf("read decision on %s in %s: stored record is not valid: %w", digest, where, err)
	}
	return rec, nil
}

// PutDecision implements DecisionStore.
func (r *Redis) PutDecision(ctx context.Context, rec *DecisionRecord) error {
	next := *rec
	next.Revision++
	v, err := json.Marshal(next)
	where := rec.Upstream + "/" + rec.Repository
	what := rec.Digest + " in " + where
	if err != nil {
		return fmt.Errorf("write decision on %s: %w", what, err)
	}
	// The indexes first (three slots, one round trip): a failure after
	// them leaves entries the walks skip, never a record they cannot find
	// (redis_recent.go says how the index by time stays exact).
	entry := string(recentKeyOf(next))
	pipe := r.c.Pipeline()
	pipe.ZAdd(ctx, r.keys.decidedIndex(), redis.Z{Member: rec.Digest})
	pipe.SAdd(ctx, r.keys.decidedIn(rec.Digest), where)
	pipe.ZAdd(ctx, r.keys.recentIndex(), redis.Z{Member: entry})
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("write decision on %s: index: %w", what, err)
	}
	res, err := r.casDecision.Run(ctx, r.c,
		[]string{r.keys.decision(where, rec.Digest), r.keys.verdicts(where)},
		rec.Digest, strconv.FormatUint(rec.Revision, 10), strconv.FormatUint(next.Revision, 10), v, rec.Verdict, entry).Result()
	if err != nil {
		return fmt.Errorf("write decision on %s: %w", what, err)
	}
	ok, stored, err := casResult(res)
	if err != nil {
		return fmt.Errorf("write decision on %s: %w", what, err)
	}
	if !ok {
		return fmt.Errorf("write decision on %s: stored at revision %s, written from %d: %w", what, stored, rec.Revision, ErrConflict)
	}
	rec.Revision = next.Revision
	if parts, _ := res.([]any); len(parts) == 3 {
		if old, _ := parts[2].(string); old != "" && old != entry {
			// The verdict is written: if this fails, the old entry stays
			// and the walk skips it (it no longer matches the record), so
			// the caller is not told the write failed when it did not.
			_ = r.c.ZRem(ctx, r.keys.recentIndex(), old).Err()
		}
	}
	return nil
}

// Decisions implements DecisionStore. For every digest, the index is read
// a batch of digests at a time: their first batches of repositories in one
// round trip, those repositories' records in another, and only a digest
// decided in more repositories than a batch holds costs more.
func (r *Redis) Decisions(ctx context.Context, digest string, fn func(DecisionRecord) bool) error {
	if digest != "" {
		_, err := r.decisionsOf(ctx, digest, 0, fn)
		return err
	}
	return r.decisionsFrom(ctx, "-", fn)
}

// DecisionsFrom implements DecisionStore: the digest index is a sorted
// set read by lexical range, so it starts at fromDigest without reading
// what comes before.
func (r *Redis) DecisionsFrom(ctx context.Context, fromDigest string, fn func(DecisionRecord) bool) error {
	from := "-"
	if fromDigest != "" {
		from = "[" + fromDigest
	}
	return r.decisionsFrom(ctx, from, fn)
}

// decisionsFrom walks the verdicts on every digest from the lexical range
// bound from ("-": the first) on.
func (r *Redis) decisionsFrom(ctx context.Context, from string, fn func(DecisionRecord) bool) error {
	return r.eachIndexedFrom(ctx, r.keys.decidedIndex(), from, func(digests []string) (bool, error) {
		pipe := r.c.Pipeline()
		scans := make([]*redis.ScanCmd, len(digests))
		for i, d := range digests {
			scans[i] = pipe.SScan(ctx, r.keys.decidedIn(d), 0, "", redisBatch)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return false, fmt.Errorf("read decisions: %w", err)
		}
		wheres := make([][]string, len(digests))
		cursors := make([]uint64, len(digests))
		pipe = r.c.Pipeline()
		cmds := make([][]*redis.StringCmd, len(digests))
		for i, d := range digests {
			wheres[i], cursors[i], _ = scans[i].Result()
			cmds[i] = r.readDecisions(ctx, pipe, d, wheres[i])
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return false, fmt.Errorf("read decisions: %w", err)
		}
		for i, d := range digests {
			if more, err := decodeDecisions(d, wheres[i], cmds[i], fn); err != nil || !more {
				return false, err
			}
			if cursors[i] != 0 {
				if more, err := r.decisionsOf(ctx, d, cursors[i], fn); err != nil || !more {
					return false, err
				}
			}
		}
		return true, nil
	})
}

// decisionsOf calls fn for each verdict on digest, from the SSCAN cursor
// on (0: all): the repositories it was decided in are read a batch at a
// time, and each batch's records in one round trip. It reports whether fn
// wants more. A repository may come twice if the set is resized meanwhile
// (SSCAN's guarantee); callers here tolerate that.
func (r *Redis) decisionsOf(ctx context.Context, digest string, cursor uint64, fn func(DecisionRecord) bool) (bool, error) {
	more := true
	err := r.sscanFrom(ctx, r.keys.decidedIn(digest), cursor, func(wheres []string) (bool, error) {
		pipe := r.c.Pipeline()
		cmds := r.readDecisions(ctx, pipe, digest, wheres)
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return false, err
		}
		var err error
		more, err = decodeDecisions(digest, wheres, cmds, fn)
		return more, err
	})
	if err != nil {
		return false, fmt.Errorf("read decisions on %s: %w", digest, err)
	}
	return more, nil
}

// readDecisions queues on pipe the reads of digest's records in wheres.
func (r *Redis) readDecisions(ctx context.Context, pipe redis.Pipeliner, digest string, wheres []string) []*redis.StringCmd {
	cmds := make([]*redis.StringCmd, len(wheres))
	for i, where := range wheres {
		cmds[i] = pipe.HGet(ctx, r.keys.decision(where, digest), "record")
	}
	return cmds
}

// decodeDecisions calls fn with the records cmds read, skipping indexed
// ones that were never written; it reports whether fn wants more.
func decodeDecisions(digest string, wheres []string, cmds []*redis.StringCmd, fn func(DecisionRecord) bool) (bool, error) {
	for i, cmd := range cmds {
		raw, err := cmd.Bytes()
		if errors.Is(err, redis.Nil) {
			continue // indexed, never written
		}
		if err != nil {
			return false, fmt.Errorf("read decision on %s in %s: %w", digest, wheres[i], err)
		}
		var rec DecisionRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return false, fmt.Errorf("read decision on %s in %s: stored record is not valid: %w", digest, wheres[i], err)
		}
		if !fn(rec) {
			return false, nil
		}
	}
	return true, nil
}
