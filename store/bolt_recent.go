package store

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	// recentBucket: the index of verdicts by time (recent.go) → "".
	recentBucket = []byte("recent")
	// recentPendingBucket exists while the index is being built for
	// verdicts written before it existed; its key "from" is the last
	// decision key indexed, so a build cut short goes on where it stopped.
	recentPendingBucket = []byte("recent-pending")
	recentFrom          = []byte("from")
)

// recentBuildBatch is how many verdicts one transaction of the index
// build reads: a large state file is indexed in bounded steps, never in
// one transaction holding every page it touched.
const recentBuildBatch = 1000

// createRecentIndex creates the index by time; state written before it
// existed is marked for buildRecentIndex.
func createRecentIndex(tx *bolt.Tx) error {
	if tx.Bucket(recentBucket) != nil {
		return nil
	}
	if _, err := tx.CreateBucket(recentBucket); err != nil {
		return err
	}
	if k, _ := tx.Bucket(decisionsBucket).Cursor().First(); k == nil {
		return nil // nothing to index
	}
	_, err := tx.CreateBucket(recentPendingBucket)
	return err
}

// buildRecentIndex indexes the verdicts written before the index existed,
// recentBuildBatch per transaction, once.
func buildRecentIndex(db *bolt.DB) error {
	for done := false; !done; {
		err := db.Update(func(tx *bolt.Tx) error {
			pending := tx.Bucket(recentPendingBucket)
			if pending == nil {
				done = true
				return nil
			}
			recent := tx.Bucket(recentBucket)
			from := bytes.Clone(pending.Get(recentFrom))
			c := tx.Bucket(decisionsBucket).Cursor()
			k, v := c.Seek(from)
			if from != nil && bytes.Equal(k, from) {
				k, v = c.Next()
			}
			var last []byte
			for n := 0; k != nil && n < recentBuildBatch; k, v = c.Next() {
				n++
				last = k
				var r struct {
					Digest     string    `json:"digest"`
					Upstream   string    `json:"upstream"`
					Repository string    `json:"repository"`
					UpdatedAt  time.Time `json:"updatedAt"`
				}
				if err := json.Unmarshal(v, &r); err != nil {
					// Not listed by time; the digest-order walks report
					// it. It must not keep the state file from opening.
					continue
				}
				if err := recent.Put(recentKey(r.UpdatedAt, r.Digest, r.Upstream+"/"+r.Repository), nil); err != nil {
					return err
				}
			}
			if k == nil {
				return tx.DeleteBucket(recentPendingBucket)
			}
			return pending.Put(recentFrom, last)
		})
		if err != nil {
			return fmt.Errorf("index verdicts by time: %w", err)
		}
	}
	return nil
}

// DecisionsByTime implements DecisionStore: a cursor Seek in the index by
// time, so a page deep in the list costs no more than the first.
func (b *Bolt) DecisionsByTime(_ context.Context, after TimeCursor, fn func(DecisionRecord) bool) error {
	return b.db.View(func(tx *bolt.Tx) error {
		decisions := tx.Bucket(decisionsBucket)
		c := tx.Bucket(recentBucket).Cursor()
		start := after.key()
		k, _ := c.Seek(start)
		if start != nil && bytes.Equal(k, start) {
			k, _ = c.Next()
		}
		for ; k != nil; k, _ = c.Next() {
			digest, where, err := parseRecentKey(k)
			if err != nil {
				return err
			}
			v := decisions.Get(key(digest, where))
			if v == nil {
				return fmt.Errorf("index entry %q: no verdict stored", k)
			}
			var r DecisionRecord
			if err := decodeRecord(v, &r); err != nil {
				return fmt.Errorf("read decision %q: %w", k, err)
			}
			if !fn(r) {
				return nil
			}
		}
		return nil
	})
}
