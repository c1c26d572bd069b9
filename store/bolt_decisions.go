package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	// decisionsBucket: digest \0 upstream/repo → DecisionRecord.
	decisionsBucket = []byte("decisions")
	// verdictsBucket: the same key → the effective verdict alone, so the
	// blob gate reads a few bytes per image, not whole records.
	verdictsBucket = []byte("verdicts")
	// blobImagesBucket: upstream/repo \0 blob \0 image → "".
	blobImagesBucket = []byte("blobimages")
	// repoBlobsBucket: upstream/repo \0 blob → its declared size, 8 bytes
	// big-endian ("" when not known): linked by an image or confirmed by
	// the upstream.
	repoBlobsBucket = []byte("repoblobs")
	// parentsBucket: upstream/repo \0 child \0 index → "".
	parentsBucket = []byte("parents")
)

var relationBuckets = [][]byte{decisionsBucket, verdictsBucket, blobImagesBucket, repoBlobsBucket, parentsBucket}

// key joins parts with NUL, which no digest, upstream name or repository
// path can contain (the router refuses them).
func key(parts ...string) []byte {
	var b []byte
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

func decisionKey(digest, upstream, repo string) []byte {
	return key(digest, upstream+"/"+repo)
}

// Decision implements DecisionStore.
func (b *Bolt) Decision(_ context.Context, digest, upstream, repo string) (DecisionRecord, error) {
	var r DecisionRecord
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(decisionsBucket).Get(decisionKey(digest, upstream, repo))
		if v == nil {
			return ErrNotFound
		}
		return decodeRecord(v, &r)
	})
	if err != nil && err != ErrNotFound {
		return DecisionRecord{}, fmt.Errorf("read decision on %s in %s/%s: %w", digest, upstream, repo, err)
	}
	return r, err
}

// PutDecision implements DecisionStore.
func (b *Bolt) PutDecision(_ context.Context, r *DecisionRecord) error {
	next := *r
	next.Revision++
	v, err := json.Marshal(next)
	if err != nil {
		return err
	}
	k := decisionKey(r.Digest, r.Upstream, r.Repository)
	err = b.db.Update(func(tx *bolt.Tx) error {
		decisions := tx.Bucket(decisionsBucket)
		var stored struct {
			Revision  uint64    `json:"revision"`
			UpdatedAt time.Time `json:"updatedAt"`
		}
		old := decisions.Get(k)
		if old != nil {
			if err := json.Unmarshal(old, &stored); err != nil {
				return err
			}
		}
		if stored.Revision != r.Revision {
			return fmt.Errorf("stored at revision %d, written from %d: %w", stored.Revision, r.Revision, ErrConflict)
		}
		// The index by time moves with the record, in this transaction.
		recent := tx.Bucket(recentBucket)
		if old != nil {
			if err := recent.Delete(recentKey(stored.UpdatedAt, r.Digest, r.Upstream+"/"+r.Repository)); err != nil {
				return err
			}
		}
		if err := recent.Put(recentKeyOf(next), nil); err != nil {
			return err
		}
		if err := tx.Bucket(verdictsBucket).Put(k, []byte(r.Verdict)); err != nil {
			return err
		}
		return decisions.Put(k, v)
	})
	if err != nil {
		return fmt.Errorf("write decision on %s in %s/%s: %w", r.Digest, r.Upstream, r.Repository, err)
	}
	r.Revision = next.Revision
	return nil
}

// Decisions implements DecisionStore.
func (b *Bolt) Decisions(_ context.Context, digest string, fn func(DecisionRecord) bool) error {
	var prefix []byte
	if digest != "" {
		prefix = key(digest, "")
	}
	return b.decisionsFrom(prefix, prefix, fn)
}

// DecisionsFrom implements DecisionStore: a cursor Seek, so a page deep
// in the list costs no more than the first.
func (b *Bolt) DecisionsFrom(_ context.Context, fromDigest string, fn func(DecisionRecord) bool) error {
	return b.decisionsFrom([]byte(fromDigest), nil, fn)
}

// decisionsFrom calls fn for the records from key start on that begin
// with prefix.
func (b *Bolt) decisionsFrom(start, prefix []byte, fn func(DecisionRecord) bool) error {
	return b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(decisionsBucket).Cursor()
		for k, v := c.Seek(start); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
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

// linkBlob records blob in where, keeping a known size over an unknown one.
func linkBlob(linked *bolt.Bucket, where string, blob BlobRef) error {
	k := key(where, blob.Digest)
	if blob.Size < 0 {
		if linked.Get(k) != nil {
			return nil
		}
		return linked.Put(k, []byte{})
	}
	return linked.Put(k, binary.BigEndian.AppendUint64(nil, uint64(blob.Size)))
}

// LinkImage implements RelationStore.
func (b *Bolt) LinkImage(_ context.Context, upstream, repo, image string, blobs []BlobRef) error {
	where := upstream + "/" + repo
	err := b.db.Update(func(tx *bolt.Tx) error {
		refs, linked := tx.Bucket(blobImagesBucket), tx.Bucket(repoBlobsBucket)
		for _, blob := range blobs {
			if err := refs.Put(key(where, blob.Digest, image), nil); err != nil {
				return err
			}
			if err := linkBlob(linked, where, blob); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("link blobs of %s@%s: %w", where, image, err)
	}
	return nil
}

// BlobImages implements RelationStore.
func (b *Bolt) BlobImages(_ context.Context, upstream, repo, blob string, fn func(image, verdict string) bool) error {
	where := upstream + "/" + repo
	prefix := key(where, blob, "")
	return b.db.View(func(tx *bolt.Tx) error {
		verdicts := tx.Bucket(verdictsBucket)
		c := tx.Bucket(blobImagesBucket).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			image := string(k[len(prefix):])
			if !fn(image, string(verdicts.Get(key(image, where)))) {
				return nil
			}
		}
		return nil
	})
}

// LinkBlob implements RelationStore.
func (b *Bolt) LinkBlob(_ context.Context, upstream, repo string, blob BlobRef) error {
	err := b.db.Update(func(tx *bolt.Tx) error {
		return linkBlob(tx.Bucket(repoBlobsBucket), upstream+"/"+repo, blob)
	})
	if err != nil {
		return fmt.Errorf("link blob %s to %s/%s: %w", blob.Digest, upstream, repo, err)
	}
	return nil
}

// BlobLink implements RelationStore.
func (b *Bolt) BlobLink(_ context.Context, upstream, repo, blob string) (int64, bool, error) {
	size, linked := int64(-1), false
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(repoBlobsBucket).Get(key(upstream+"/"+repo, blob))
		linked = v != nil
		if len(v) == 8 {
			size = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	if err != nil {
		return -1, false, fmt.Errorf("look up blob %s in %s/%s: %w", blob, upstream, repo, err)
	}
	return size, linked, nil
}

// LinkIndex implements RelationStore.
func (b *Bolt) LinkIndex(_ context.Context, upstream, repo, index string, children []string) error {
	where := upstream + "/" + repo
	err := b.db.Update(func(tx *bolt.Tx) error {
		parents := tx.Bucket(parentsBucket)
		for _, child := range children {
			if err := parents.Put(key(where, child, index), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("link children of %s@%s: %w", where, index, err)
	}
	return nil
}

// Parents implements RelationStore.
func (b *Bolt) Parents(_ context.Context, upstream, repo, child string, fn func(index string) bool) error {
	prefix := key(upstream+"/"+repo, child, "")
	return b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(parentsBucket).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if !fn(string(k[len(prefix):])) {
				return nil
			}
		}
		return nil
	})
}
