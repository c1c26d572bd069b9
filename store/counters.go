package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"
)

// Counters are event counts shared by every replica (pulls refused, by
// reason), kept in hourly buckets that expire after CounterRetention: the
// dashboard's "last 24 h" without a time series database.
type Counters interface {
	// Add adds counts (field → n) to counter name's bucket of the hour
	// holding at. One call is one write, however many fields it holds.
	Add(ctx context.Context, name string, at time.Time, counts map[string]int64) error
	// Sum adds up counter name's buckets from the hour holding since to now
	// (at most CounterRetention of them), field by field.
	Sum(ctx context.Context, name string, since time.Time) (map[string]int64, error)
}

const (
	// CounterRetention is how long a bucket is kept: a day and the hour
	// that holds its start.
	CounterRetention = 25 * time.Hour
	// maxCounterFields bounds the fields of one Add; callers fold the rest
	// into one "other" field (the counts come from outside input).
	maxCounterFields = 64
	// maxCounterName bounds a counter's and a field's name.
	maxCounterName = 64
	// maxSumFields bounds the fields Sum returns, should a bucket hold
	// more than writers put there (a store shared with another version).
	maxSumFields = 256
)

// counterBuckets lists the hour starts from the hour holding since to the
// hour holding now, newest last; never more than CounterRetention holds.
func counterBuckets(since, now time.Time) []int64 {
	first, last := since.Truncate(time.Hour), now.Truncate(time.Hour)
	if oldest := last.Add(-CounterRetention + time.Hour); first.Before(oldest) {
		first = oldest
	}
	var hours []int64
	for h := first; !h.After(last); h = h.Add(time.Hour) {
		hours = append(hours, h.Unix())
	}
	return hours
}

func checkCounterAdd(name string, counts map[string]int64) error {
	if err := checkCounterName(name); err != nil {
		return err
	}
	if len(counts) > maxCounterFields {
		return fmt.Errorf("%d fields in one add: at most %d", len(counts), maxCounterFields)
	}
	for f, n := range counts {
		if f == "" || len(f) > maxCounterName {
			return fmt.Errorf("field %q: want 1 to %d bytes", f, maxCounterName)
		}
		if n < 0 {
			return fmt.Errorf("field %s: negative count %d", f, n)
		}
	}
	return nil
}

func checkCounterName(name string) error {
	// No NUL: it ends the name in the embedded store's keys.
	if name == "" || len(name) > maxCounterName || strings.ContainsRune(name, 0) {
		return fmt.Errorf("counter name %q: want 1 to %d bytes, no NUL", name, maxCounterName)
	}
	return nil
}

// addSum adds n to sum[f], refusing new fields past maxSumFields.
func addSum(sum map[string]int64, f string, n int64) {
	if _, ok := sum[f]; ok || len(sum) < maxSumFields {
		sum[f] += n
	}
}

// countersBucket: name \0 hour (8 bytes, big-endian Unix seconds) → the
// bucket's fields as JSON.
var countersBucket = []byte("counters")

func counterKey(name string, hour int64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(name), 0), uint64(hour))
}

// Add implements Counters. Buckets of name past CounterRetention are
// deleted in the same transaction, so the bucket stays bounded.
func (b *Bolt) Add(_ context.Context, name string, at time.Time, counts map[string]int64) error {
	if err := checkCounterAdd(name, counts); err != nil {
		return fmt.Errorf("add to counter %s: %w", name, err)
	}
	if len(counts) == 0 {
		return nil
	}
	hour := at.Truncate(time.Hour).Unix()
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(countersBucket)
		if err != nil {
			return err
		}
		k := counterKey(name, hour)
		fields := map[string]int64{}
		if v := bk.Get(k); v != nil {
			if err := json.Unmarshal(v, &fields); err != nil {
				return fmt.Errorf("stored bucket is not valid: %w", err)
			}
		}
		for f, n := range counts {
			addSum(fields, f, n)
		}
		v, err := json.Marshal(fields)
		if err != nil {
			return err
		}
		if err := bk.Put(k, v); err != nil {
			return err
		}
		// Expire: every bucket of name older than the retention.
		cutoff := counterKey(name, time.Now().Add(-CounterRetention).Truncate(time.Hour).Unix())
		var old [][]byte
		c := bk.Cursor()
		for k, _ := c.Seek(counterKey(name, 0)); k != nil && bytes.Compare(k, cutoff) < 0 && len(k) == len(cutoff); k, _ = c.Next() {
			old = append(old, k)
		}
		for _, k := range old { // not while the cursor walks
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add to counter %s: %w", name, err)
	}
	return nil
}

// Sum implements Counters.
func (b *Bolt) Sum(_ context.Context, name string, since time.Time) (map[string]int64, error) {
	if err := checkCounterName(name); err != nil {
		return nil, fmt.Errorf("sum counter: %w", err)
	}
	sum := map[string]int64{}
	err := b.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(countersBucket)
		if bk == nil {
			return nil
		}
		for _, hour := range counterBuckets(since, time.Now()) {
			v := bk.Get(counterKey(name, hour))
			if v == nil {
				continue
			}
			var fields map[string]int64
			if err := json.Unmarshal(v, &fields); err != nil {
				return fmt.Errorf("bucket %d: stored bucket is not valid: %w", hour, err)
			}
			for f, n := range fields {
				addSum(sum, f, n)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sum counter %s: %w", name, err)
	}
	return sum, nil
}

// counter is the key of one hourly bucket: every bucket of a counter
// shares the hash tag {counter:NAME}, so one round trip reads them all on
// Redis Cluster too.
func (k redisKeys) counter(name string, hour int64) string {
	return k.tagged("counter:"+name, strconv.FormatInt(hour, 10))
}

// Add implements Counters: HINCRBY per field and the bucket's TTL, in one
// MULTI (one key, one slot).
func (r *Redis) Add(ctx context.Context, name string, at time.Time, counts map[string]int64) error {
	if err := checkCounterAdd(name, counts); err != nil {
		return fmt.Errorf("add to counter %s: %w", name, err)
	}
	if len(counts) == 0 {
		return nil
	}
	k := r.keys.counter(name, at.Truncate(time.Hour).Unix())
	pipe := r.c.TxPipeline()
	for f, n := range counts {
		pipe.HIncrBy(ctx, k, f, n)
	}
	pipe.Expire(ctx, k, CounterRetention)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("add to counter %s: %w", name, err)
	}
	return nil
}

// Sum implements Counters: the buckets' HGETALLs in one round trip.
func (r *Redis) Sum(ctx context.Context, name string, since time.Time) (map[string]int64, error) {
	if err := checkCounterName(name); err != nil {
		return nil, fmt.Errorf("sum counter: %w", err)
	}
	hours := counterBuckets(since, time.Now())
	pipe := r.c.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(hours))
	for i, h := range hours {
		cmds[i] = pipe.HGetAll(ctx, r.keys.counter(name, h))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("sum counter %s: %w", name, err)
	}
	sum := map[string]int64{}
	for i, cmd := range cmds {
		for f, v := range cmd.Val() {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("sum counter %s: bucket %d field %q: stored count is not valid: %q", name, hours[i], f, v)
			}
			addSum(sum, f, n)
		}
	}
	return sum, nil
}
