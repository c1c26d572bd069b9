package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	quarantinesBucket = []byte("quarantines") // digest → Quarantine
	exceptionsBucket  = []byte("exceptions")  // id → Exception
	// controlsMetaBucket holds the controls' version and the counts the
	// bounds are checked against (counting a bucket walks it).
	controlsMetaBucket = []byte("controls-meta")
	// auditBucket: 8 bytes of time (Unix ns) and 8 of sequence → record,
	// so keys sort by time and a since query seeks.
	auditBucket = []byte("audit")
)

var (
	controlsVersionKey  = []byte("version")
	quarantineCountKey  = []byte("quarantines")
	exceptionCountKey   = []byte("exceptions")
	auditCountKey       = []byte("audit")
	controlsBucketNames = [][]byte{quarantinesBucket, exceptionsBucket, controlsMetaBucket, auditBucket}
)

func metaCount(meta *bolt.Bucket, key []byte) uint64 {
	if v := meta.Get(key); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func putMetaCount(meta *bolt.Bucket, key []byte, n uint64) error {
	return meta.Put(key, binary.BigEndian.AppendUint64(nil, n))
}

// putControl writes one quarantine or exception under key, counting it
// against max when it is new, and advances the controls' version.
func (b *Bolt) putControl(bucket, countKey []byte, key string, v any, max int) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.db.Update(func(tx *bolt.Tx) error {
		bk, meta := tx.Bucket(bucket), tx.Bucket(controlsMetaBucket)
		if bk.Get([]byte(key)) == nil {
			n := metaCount(meta, countKey)
			if n >= uint64(max) {
				return fmt.Errorf("%w: %d %s in force", ErrLimit, n, countKey)
			}
			if err := putMetaCount(meta, countKey, n+1); err != nil {
				return err
			}
		}
		if err := bk.Put([]byte(key), raw); err != nil {
			return err
		}
		return putMetaCount(meta, controlsVersionKey, metaCount(meta, controlsVersionKey)+1)
	})
}

// deleteControl removes key and decodes what it held into v.
func (b *Bolt) deleteControl(bucket, countKey []byte, key string, v any) error {
	return b.deleteControlIf(bucket, countKey, key, v, func() bool { return true })
}

// deleteControlIf removes key when, with what it held decoded into v,
// still() says so; errChanged when it does not.
func (b *Bolt) deleteControlIf(bucket, countKey []byte, key string, v any, still func() bool) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		bk, meta := tx.Bucket(bucket), tx.Bucket(controlsMetaBucket)
		raw := bk.Get([]byte(key))
		if raw == nil {
			return ErrNotFound
		}
		if err := decodeRecord(raw, v); err != nil {
			return err
		}
		if !still() {
			return errChanged
		}
		if err := bk.Delete([]byte(key)); err != nil {
			return err
		}
		if n := metaCount(meta, countKey); n > 0 {
			if err := putMetaCount(meta, countKey, n-1); err != nil {
				return err
			}
		}
		return putMetaCount(meta, controlsVersionKey, metaCount(meta, controlsVersionKey)+1)
	})
}

// eachControl calls fn with each value of bucket after key after; a value
// that does not decode is an error, not skipped: a quarantine must not
// silently stop applying.
func eachControl[T any](b *Bolt, bucket []byte, after string, fn func(T) bool) error {
	return b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		k, v := c.Seek([]byte(after))
		if k != nil && after != "" && string(k) == after {
			k, v = c.Next()
		}
		for ; k != nil; k, v = c.Next() {
			var x T
			if err := decodeRecord(v, &x); err != nil {
				return fmt.Errorf("%s %s: %w", bucket, k, err)
			}
			if !fn(x) {
				return nil
			}
		}
		return nil
	})
}

// PutQuarantine implements ControlStore.
func (b *Bolt) PutQuarantine(_ context.Context, q Quarantine) error {
	if err := b.putControl(quarantinesBucket, quarantineCountKey, q.Digest, q, MaxQuarantines); err != nil {
		return fmt.Errorf("write quarantine of %s: %w", q.Digest, err)
	}
	return nil
}

// DeleteQuarantine implements ControlStore.
func (b *Bolt) DeleteQuarantine(_ context.Context, digest string) (Quarantine, error) {
	var q Quarantine
	if err := b.deleteControl(quarantinesBucket, quarantineCountKey, digest, &q); err != nil {
		if err == ErrNotFound {
			return Quarantine{}, err
		}
		return Quarantine{}, fmt.Errorf("lift quarantine of %s: %w", digest, err)
	}
	return q, nil
}

// DeleteQuarantineIf implements ControlStore.
func (b *Bolt) DeleteQuarantineIf(_ context.Context, q Quarantine) (bool, error) {
	var held Quarantine
	err := b.deleteControlIf(quarantinesBucket, quarantineCountKey, q.Digest, &held, func() bool { return SameQuarantine(held, q) })
	return deletedIf(err, "lift quarantine of "+q.Digest)
}

// Quarantines implements ControlStore.
func (b *Bolt) Quarantines(_ context.Context, after string, fn func(Quarantine) bool) error {
	if err := eachControl(b, quarantinesBucket, after, fn); err != nil {
		return fmt.Errorf("read quarantines: %w", err)
	}
	return nil
}

// PutException implements ControlStore.
func (b *Bolt) PutException(_ context.Context, e Exception) error {
	if err := b.putControl(exceptionsBucket, exceptionCountKey, e.ID, e, MaxExceptions); err != nil {
		return fmt.Errorf("write exception %s: %w", e.ID, err)
	}
	return nil
}

// DeleteException implements ControlStore.
func (b *Bolt) DeleteException(_ context.Context, id string) (Exception, error) {
	var e Exception
	if err := b.deleteControl(exceptionsBucket, exceptionCountKey, id, &e); err != nil {
		if err == ErrNotFound {
			return Exception{}, err
		}
		return Exception{}, fmt.Errorf("remove exception %s: %w", id, err)
	}
	return e, nil
}

// DeleteExceptionIf implements ControlStore.
func (b *Bolt) DeleteExceptionIf(_ context.Context, e Exception) (bool, error) {
	var held Exception
	err := b.deleteControlIf(exceptionsBucket, exceptionCountKey, e.ID, &held, func() bool { return SameException(held, e) })
	return deletedIf(err, "remove exception "+e.ID)
}

// Exceptions implements ControlStore.
func (b *Bolt) Exceptions(_ context.Context, after string, fn func(Exception) bool) error {
	if err := eachControl(b, exceptionsBucket, after, fn); err != nil {
		return fmt.Errorf("read exceptions: %w", err)
	}
	return nil
}

// ControlsVersion implements ControlStore.
func (b *Bolt) ControlsVersion(context.Context) (uint64, error) {
	var v uint64
	err := b.db.View(func(tx *bolt.Tx) error {
		v = metaCount(tx.Bucket(controlsMetaBucket), controlsVersionKey)
		return nil
	})
	return v, err
}

// auditTrimBatch is how many of the oldest records one append removes at
// most once the log is over MaxAuditRecords: the log shrinks back in
// steps without one append paying for a large delete.
const auditTrimBatch = 64

// AppendAudit implements AuditStore.
func (b *Bolt) AppendAudit(_ context.Context, r *AuditRecord) error {
	if r.At.IsZero() {
		r.At = time.Now()
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		bk, meta := tx.Bucket(auditBucket), tx.Bucket(controlsMetaBucket)
		seq, err := bk.NextSequence()
		if err != nil {
			return err
		}
		key := binary.BigEndian.AppendUint64(nil, uint64(max(r.At.UnixNano(), 0)))
		key = binary.BigEndian.AppendUint64(key, seq)
		r.ID = hex.EncodeToString(key)
		raw, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if err := bk.Put(key, raw); err != nil {
			return err
		}
		n := metaCount(meta, auditCountKey) + 1
		c := bk.Cursor()
		for trimmed := 0; n > MaxAuditRecords && trimmed < auditTrimBatch; trimmed++ {
			k, _ := c.First()
			if k == nil || bytes.Equal(k, key) {
				break
			}
			if err := c.Delete(); err != nil {
				return err
			}
			n--
		}
		return putMetaCount(meta, auditCountKey, n)
	})
	if err != nil {
		return fmt.Errorf("append audit record %s: %w", r.Kind, err)
	}
	return nil
}

// Audit implements AuditStore.
func (b *Bolt) Audit(_ context.Context, q AuditQuery, fn func(AuditRecord) bool) error {
	start := binary.BigEndian.AppendUint64(nil, uint64(max(q.Since.UnixNano(), 0)))
	var after []byte
	if q.After != "" {
		k, err := hex.DecodeString(q.After)
		if err != nil || len(k) != 16 {
			return fmt.Errorf("read audit log: cursor %q is not one this store made", q.After)
		}
		after = k
		if bytes.Compare(after, start) > 0 {
			start = after
		}
	}
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(auditBucket).Cursor()
		for k, v := c.Seek(start); k != nil; k, v = c.Next() {
			if after != nil && bytes.Compare(k, after) <= 0 {
				continue
			}
			var r AuditRecord
			if err := decodeRecord(v, &r); err != nil {
				return fmt.Errorf("record %x: %w", k, err)
			}
			if q.Kind != "" && r.Kind != q.Kind {
				continue
			}
			if !fn(r) {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read audit log: %w", err)
	}
	return nil
}
