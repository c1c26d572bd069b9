package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
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
)

// Bolt is the embedded Store: one bbolt file in the data directory.
type Bolt struct {
	db *bolt.DB
}

// OpenBolt opens (creating if needed) the state file at path.
func OpenBolt(path string) (*Bolt, error) {
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
		for _, b := range [][]byte{tagsBucket, scansBucket, referrersBucket, contentBucket, localTagsBucket} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
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

// Close implements Store.
func (b *Bolt) Close() error { return b.db.Close() }

// Scan implements ScanStore.
func (b *Bolt) Scan(_ context.Context, digest string) (ScanRecord, error) {
	var r ScanRecord
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(scansBucket).Get([]byte(digest))
		if v == nil {
			return ErrNotFound
		}
		return json.Unmarshal(v, &r)
	})
	if err != nil && err != ErrNotFound {
		return ScanRecord{}, fmt.Errorf("read scan %s: %w", digest, err)
	}
	return r, err
}

// PutScan implements ScanStore.
func (b *Bolt) PutScan(_ context.Context, r ScanRecord) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	err = b.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(scansBucket).Put([]byte(r.Digest), v)
	})
	if err != nil {
		return fmt.Errorf("write scan %s: %w", r.Digest, err)
	}
	return nil
}

// Scans implements ScanStore.
func (b *Bolt) Scans(_ context.Context, fn func(ScanRecord) bool) error {
	return b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(scansBucket).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var r ScanRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("read scan %s: %w", k, err)
			}
			if !fn(r) {
				return nil
			}
		}
		return nil
	})
}

type referrerSet struct {
	Descriptors []json.RawMessage `json:"descriptors"`
	Contents    []string          `json:"contents"`
	// Added holds groups of digests added by AddContents, oldest first.
	Added [][]string `json:"added,omitempty"`
}

// digests lists every content digest the set keeps alive.
func (s referrerSet) digests() []string {
	out := slices.Clone(s.Contents)
	for _, g := range s.Added {
		out = append(out, g...)
	}
	return out
}

// maxAddedGroups bounds what AddContents keeps per subject: a client
// that fetched a composed manifest a moment ago can still fetch its
// config, while compositions that changed many times do not pile up.
const maxAddedGroups = 8

// PutReferrers implements ArtifactStore. Contents are reference-counted by
// scanning the other subjects' sets only for digests being dropped, which
// keeps shared blobs (the empty config) alive.
func (b *Bolt) PutReferrers(_ context.Context, subject string, descriptors []json.RawMessage, contents map[string]Content) error {
	set := referrerSet{Descriptors: descriptors}
	for d := range contents {
		set.Contents = append(set.Contents, d)
	}
	v, err := json.Marshal(set)
	if err != nil {
		return err
	}
	err = b.db.Update(func(tx *bolt.Tx) error {
		refs, content := tx.Bucket(referrersBucket), tx.Bucket(contentBucket)
		for d, c := range contents {
			raw, err := json.Marshal(c)
			if err != nil {
				return err
			}
			if err := content.Put([]byte(d), raw); err != nil {
				return err
			}
		}
		var old referrerSet
		if prev := refs.Get([]byte(subject)); prev != nil {
			if err := json.Unmarshal(prev, &old); err != nil {
				return err
			}
		}
		if err := refs.Put([]byte(subject), v); err != nil {
			return err
		}
		for _, d := range old.digests() {
			if _, kept := contents[d]; kept || usedElsewhere(refs, subject, d) {
				continue
			}
			if err := content.Delete([]byte(d)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write referrers of %s: %w", subject, err)
	}
	return nil
}

func usedElsewhere(refs *bolt.Bucket, subject, d string) bool {
	used := false
	_ = refs.ForEach(func(k, v []byte) error {
		if string(k) == subject {
			return nil
		}
		var set referrerSet
		if json.Unmarshal(v, &set) == nil && slices.Contains(set.digests(), d) {
			used = true
		}
		return nil
	})
	return used
}

// AddContents implements ArtifactStore.
func (b *Bolt) AddContents(_ context.Context, subject string, contents map[string]Content) error {
	group := slices.Sorted(maps.Keys(contents))
	err := b.db.Update(func(tx *bolt.Tx) error {
		refs, content := tx.Bucket(referrersBucket), tx.Bucket(contentBucket)
		var set referrerSet
		if prev := refs.Get([]byte(subject)); prev != nil {
			if err := json.Unmarshal(prev, &set); err != nil {
				return err
			}
		}
		for d, c := range contents {
			raw, err := json.Marshal(c)
			if err != nil {
				return err
			}
			if err := content.Put([]byte(d), raw); err != nil {
				return err
			}
		}
		set.Added = slices.DeleteFunc(set.Added, func(g []string) bool { return slices.Equal(g, group) })
		set.Added = append(set.Added, group)
		var dropped []string
		if n := len(set.Added) - maxAddedGroups; n > 0 {
			for _, g := range set.Added[:n] {
				dropped = append(dropped, g...)
			}
			set.Added = slices.Clone(set.Added[n:])
		}
		v, err := json.Marshal(set)
		if err != nil {
			return err
		}
		if err := refs.Put([]byte(subject), v); err != nil {
			return err
		}
		kept := set.digests()
		for _, d := range dropped {
			if slices.Contains(kept, d) || usedElsewhere(refs, subject, d) {
				continue
			}
			if err := content.Delete([]byte(d)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("add content for %s: %w", subject, err)
	}
	return nil
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
