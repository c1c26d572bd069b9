package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	tagsBucket      = []byte("tags")
	scansBucket     = []byte("scans")
	referrersBucket = []byte("referrers") // subject → {descriptors, digests of their contents}
	contentBucket   = []byte("content")   // digest → Content
	localTagsBucket = []byte("localtags") // tag → digest of published content
	// contentRefsBucket counts, per content digest, the subjects whose
	// referrer set keeps it; content is deleted when that reaches zero.
	contentRefsBucket = []byte("contentrefs")
	// scanRevisionsBucket holds each scan record's revision, so a write
	// checks it without decoding the whole stored record.
	scanRevisionsBucket = []byte("scanrevisions")
	// scanMarksBucket and scanResultsBucket hold match marks (MatchMark):
	// digest → JSON, same-findings marks and new results apart.
	scanMarksBucket   = []byte("scanmarks")
	scanResultsBucket = []byte("scanresults")
)

// Bolt is the embedded Store: one bbolt file in the data directory.
type Bolt struct {
	db *bolt.DB
}

// OpenBolt opens (creating if needed) the state file at path.
func OpenBolt(path string) (*Bolt, error) {
	if err := checkStateFile(path); err != nil { // before bbolt trusts it (boltcheck.go)
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	// A short lock timeout: a second process on the same data directory
	// must fail clearly instead of hanging.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open state %s (is another portcullis using this data directory?): %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		countRefs := tx.Bucket(contentRefsBucket) == nil
		for _, b := range slices.Concat([][]byte{tagsBucket, scansBucket, referrersBucket, contentBucket, localTagsBucket, contentRefsBucket, scanRevisionsBucket, scanMarksBucket, scanResultsBucket}, relationBuckets, controlsBucketNames) {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		if err := createRecentIndex(tx); err != nil {
			return err
		}
		if countRefs {
			// State written before reference counts: count once.
			return countContentRefs(tx)
		}
		return nil
	})
	if err == nil {
		err = buildRecentIndex(db)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// Tag implements Store.
func (b *Bolt) Tag(_ context.Context, key string) (TagEntry, error) {
	var e TagEntry
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(tagsBucket).Get([]byte(key))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &e)
	})
	if err != nil && err != ErrNotFound {
		return TagEntry{}, fmt.Errorf("read tag %s: %w", key, err)
	}
	return e, err
}

// PutTag implements Store.
func (b *Bolt) PutTag(_ context.Context, key string, e TagEntry) error {
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	err = b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(tagsBucket).Put([]byte(key), v)
	})
	if err != nil {
		return fmt.Errorf("write tag %s: %w", key, err)
	}
	return nil
}

// decodeRecord reads a stored scan or decision record. One whose typed
// parts (inventory, findings, decision) do not decode is not read at all:
// half a record would pass for a result with nothing found.
func decodeRecord(v []byte, r any) error {
	if err := json.Unmarshal(v, r); err != nil {
		return fmt.Errorf("stored record is not valid: %w", err)
	}
	return nil
}

// Close implements Store.
func (b *Bolt) Close() error { return b.db.Close() }

// Scan implements ScanStore.
func (b *Bolt) Scan(_ context.Context, digest string) (ScanRecord, error) {
	return b.scan(digest, true)
}

// ScanWithoutInventory implements InventorySkipper.
func (b *Bolt) ScanWithoutInventory(_ context.Context, digest string) (ScanRecord, error) {
	return b.scan(digest, false)
}

func (b *Bolt) scan(digest string, withInventory bool) (ScanRecord, error) {
	var r ScanRecord
	var into any = &r
	if !withInventory {
		into = &recordWithoutInventory{ScanRecord: &r}
	}
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(scansBucket).Get([]byte(digest))
		if v == nil {
			return ErrNotFound
		}
		if err := decodeRecord(v, into); err != nil {
			return err
		}
		applyBoltMarks(tx, &r)
		return nil
	})
	if err != nil && err != ErrNotFound {
		return ScanRecord{}, fmt.Errorf("read scan %s: %w", digest, err)
	}
	return r, err
}

// PutScan implements ScanStore.
func (b *Bolt) PutScan(_ context.Context, r *ScanRecord) error {
	next := *r
	next.Revision++
	v, err := json.Marshal(next)
	if err != nil {
		return err
	}
	err = b.db.Update(func(tx *bolt.Tx) error {
		scans, revisions := tx.Bucket(scansBucket), tx.Bucket(scanRevisionsBucket)
		key := []byte(r.Digest)
		var stored uint64
		if rev := revisions.Get(key); len(rev) == 8 {
			stored = binary.BigEndian.Uint64(rev)
		} else if old := scans.Get(key); old != nil {
			// Written before revisions were kept apart.
			var legacy struct {
				Revision uint64 `json:"revision"`
			}
			if err := json.Unmarshal(old, &legacy); err != nil {
				return err
			}
			stored = legacy.Revision
		}
		if stored != r.Revision {
			return fmt.Errorf("stored at revision %d, written from %d: %w", stored, r.Revision, ErrConflict)
		}
		if err := revisions.Put(key, binary.BigEndian.AppendUint64(nil, next.Revision)); err != nil {
			return err
		}
		// The new revision ends any mark; dropping them keeps the buckets
		// small.
		if err := tx.Bucket(scanMarksBucket).Delete(key); err != nil {
			return err
		}
		if err := tx.Bucket(scanResultsBucket).Delete(key); err != nil {
			return err
		}
		return scans.Put(key, v)
	})
	if err != nil {
		return fmt.Errorf("write scan %s: %w", r.Digest, err)
	}
	r.Revision = next.Revision
	return nil
}

// Scans implements ScanStore.
func (b *Bolt) Scans(_ context.Context, fn func(ScanRecord) bool) error {
	return b.scans(fn, true)
}

// ScansWithoutInventory implements InventorySkipper.
func (b *Bolt) ScansWithoutInventory(_ context.Context, fn func(ScanRecord) bool) error {
	return b.scans(fn, false)
}

func (b *Bolt) scans(fn func(ScanRecord) bool, withInventory bool) error {
	return b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(scansBucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var r ScanRecord
			var into any = &r
			if !withInventory {
				into = &recordWithoutInventory{ScanRecord: &r}
			}
			if err := decodeRecord(v, into); err != nil {
				return fmt.Errorf("read scan %s: %w", k, err)
			}
			applyBoltMarks(tx, &r)
			if !fn(r) {
				return nil
			}
		}
		return nil
	})
}

// applyBoltMarks puts the stored marks of r, if any, on r.
func applyBoltMarks(tx *bolt.Tx, r *ScanRecord) {
	key := []byte(r.Digest)
	applyRecordMarks(r, tx.Bucket(scanResultsBucket).Get(key), tx.Bucket(scanMarksBucket).Get(key))
}

// MarkMatched implements MatchMarker: one commit for the whole batch.
func (b *Bolt) MarkMatched(_ context.Context, marks []MatchMark) ([]MatchMark, error) {
	if err := checkMarks(marks); err != nil {
		return nil, err
	}
	if len(marks) == 0 {
		return nil, nil
	}
	var dropped []MatchMark
	err := b.db.Update(func(tx *bolt.Tx) error {
		dropped = dropped[:0] // bbolt may run the function again
		revisions, same, results := tx.Bucket(scanRevisionsBucket), tx.Bucket(scanMarksBucket), tx.Bucket(scanResultsBucket)
		for _, m := range marks {
			key := []byte(m.Digest)
			// Records written before revisions were kept apart have no
			// entry here: they are dropped, and rewritten whole once
			// (which gives them one).
			if rev := revisions.Get(key); len(rev) != 8 || binary.BigEndian.Uint64(rev) != m.Revision {
				dropped = append(dropped, m)
				continue
			}
			v, err := encodeMark(m)
			if err != nil {
				return err
			}
			if m.Result == nil {
				if err := same.Put(key, v); err != nil {
					return err
				}
				continue
			}
			// A new result ends the same-findings mark made before it.
			if err := same.Delete(key); err != nil {
				return err
			}
			if err := results.Put(key, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mark %d matched scans: %w", len(marks), err)
	}
	return dropped, nil
}

// ScanFindings implements ScanStore.
func (b *Bolt) ScanFindings(_ context.Context, fn func(ScanFindings) bool) error {
	return b.db.View(func(tx *bolt.Tx) error {
		revisions, results := tx.Bucket(scanRevisionsBucket), tx.Bucket(scanResultsBucket)
		c := tx.Bucket(scansBucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var r ScanFindings
			if err := decodeRecord(v, &r); err != nil {
				return fmt.Errorf("read scan %s: %w", k, err)
			}
			if result := results.Get(k); result != nil {
				if rev := revisions.Get(k); len(rev) == 8 {
					applyFindingsMarks(&r, binary.BigEndian.Uint64(rev), result)
				}
			}
			if !fn(r) {
				return nil
			}
		}
		return nil
	})
}

// Referrers implements ArtifactStore.
func (b *Bolt) Referrers(_ context.Context, subject string) ([]json.RawMessage, error) {
	var set referrerSet
	err := b.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(referrersBucket).Get([]byte(subject)); v != nil {
			return json.Unmarshal(v, &set)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read referrers of %s: %w", subject, err)
	}
	return set.Descriptors, nil
}

// Content implements ArtifactStore.
func (b *Bolt) Content(_ context.Context, digest string) (Content, error) {
	var c Content
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(contentBucket).Get([]byte(digest))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &c)
	})
	if err != nil && err != ErrNotFound {
		return Content{}, fmt.Errorf("read content %s: %w", digest, err)
	}
	return c, err
}

// PutLocalTag implements ArtifactStore.
func (b *Bolt) PutLocalTag(_ context.Context, tag, digest string) error {
	err := b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(localTagsBucket).Put([]byte(tag), []byte(digest))
	})
	if err != nil {
		return fmt.Errorf("write local tag %s: %w", tag, err)
	}
	return nil
}

// LocalTag implements ArtifactStore.
func (b *Bolt) LocalTag(_ context.Context, tag string) (string, error) {
	var d string
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(localTagsBucket).Get([]byte(tag))
		if v == nil {
			return ErrNotFound
		}
		d = string(v)
		return nil
	})
	if err != nil && err != ErrNotFound {
		return "", fmt.Errorf("read local tag %s: %w", tag, err)
	}
	return d, err
}
