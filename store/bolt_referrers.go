package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// referrerSet is what the store keeps per subject: the descriptors it
// publishes and the digests of every content it keeps alive.
type referrerSet struct {
	Descriptors []json.RawMessage `json:"descriptors"`
	Contents    []string          `json:"contents"`
	// Added holds groups of digests added by AddContents, oldest first.
	Added [][]string `json:"added,omitempty"`
}

// digests is the set of content digests s keeps alive.
func (s referrerSet) digests() map[string]bool {
	out := map[string]bool{}
	for _, d := range s.Contents {
		out[d] = true
	}
	for _, g := range s.Added {
		for _, d := range g {
			out[d] = true
		}
	}
	return out
}

// maxAddedGroups bounds what AddContents keeps per subject: a client
// that fetched a composed manifest a moment ago can still fetch its
// config, while compositions that changed many times do not pile up.
const maxAddedGroups = 8

// PutReferrers implements ArtifactStore.
func (b *Bolt) PutReferrers(_ context.Context, subject string, descriptors []json.RawMessage, contents map[string]Content) error {
	next := referrerSet{Descriptors: descriptors, Contents: slices.Sorted(maps.Keys(contents))}
	err := b.db.Update(func(tx *bolt.Tx) error {
		old, err := readSet(tx, subject)
		if err != nil {
			return err
		}
		return replaceSet(tx, subject, old, next, contents)
	})
	if err != nil {
		return fmt.Errorf("write referrers of %s: %w", subject, err)
	}
	return nil
}

// AddContents implements ArtifactStore.
func (b *Bolt) AddContents(_ context.Context, subject string, contents map[string]Content) error {
	group := slices.Sorted(maps.Keys(contents))
	// The same composition served again (every verification of the same
	// image) is the latest group already: no write, no sync.
	latest := false
	_ = b.db.View(func(tx *bolt.Tx) error {
		set, err := readSet(tx, subject)
		latest = err == nil && len(set.Added) > 0 && slices.Equal(set.Added[len(set.Added)-1], group)
		return nil
	})
	if latest {
		return nil
	}
	err := b.db.Update(func(tx *bolt.Tx) error {
		old, err := readSet(tx, subject)
		if err != nil {
			return err
		}
		next := old
		next.Added = slices.DeleteFunc(slices.Clone(old.Added), func(g []string) bool { return slices.Equal(g, group) })
		next.Added = append(next.Added, group)
		if n := len(next.Added) - maxAddedGroups; n > 0 {
			next.Added = next.Added[n:]
		}
		return replaceSet(tx, subject, old, next, contents)
	})
	if err != nil {
		return fmt.Errorf("add content for %s: %w", subject, err)
	}
	return nil
}

func readSet(tx *bolt.Tx, subject string) (referrerSet, error) {
	var set referrerSet
	if v := tx.Bucket(referrersBucket).Get([]byte(subject)); v != nil {
		if err := json.Unmarshal(v, &set); err != nil {
			return referrerSet{}, fmt.Errorf("stored referrers of %s: %w", subject, err)
		}
	}
	return set, nil
}

// replaceSet stores subject's next set with the contents it brings, and
// moves references from old's digests to next's: content no set keeps any
// more is deleted. Shared content (the empty config, an SBOM two images
// have in common) lives as long as one set keeps it, at a cost that does
// not grow with the number of subjects.
func replaceSet(tx *bolt.Tx, subject string, old, next referrerSet, contents map[string]Content) error {
	content, counts := tx.Bucket(contentBucket), tx.Bucket(contentRefsBucket)
	for d, c := range contents {
		raw, err := json.Marshal(c)
		if err != nil {
			return err
		}
		if err := content.Put([]byte(d), raw); err != nil {
			return err
		}
	}
	was, is := old.digests(), next.digests()
	for d := range is {
		if !was[d] {
			if _, err := addRef(counts, d, 1); err != nil {
				return err
			}
		}
	}
	for d := range was {
		if is[d] {
			continue
		}
		left, err := addRef(counts, d, -1)
		if err != nil {
			return err
		}
		if left == 0 {
			if err := content.Delete([]byte(d)); err != nil {
				return err
			}
		}
	}
	v, err := json.Marshal(next)
	if err != nil {
		return err
	}
	return tx.Bucket(referrersBucket).Put([]byte(subject), v)
}

// addRef changes d's reference count by delta and returns the new count;
// at zero the count is removed.
func addRef(counts *bolt.Bucket, d string, delta int64) (int64, error) {
	var n int64
	if v := counts.Get([]byte(d)); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	n += delta
	if n <= 0 {
		return 0, counts.Delete([]byte(d))
	}
	return n, counts.Put([]byte(d), binary.BigEndian.AppendUint64(nil, uint64(n)))
}

// countContentRefs fills the reference counts from the stored sets.
func countContentRefs(tx *bolt.Tx) error {
	counts := tx.Bucket(contentRefsBucket)
	return tx.Bucket(referrersBucket).ForEach(func(k, v []byte) error {
		var set referrerSet
		if err := json.Unmarshal(v, &set); err != nil {
			return fmt.Errorf("stored referrers of %s: %w", k, err)
		}
		for d := range set.digests() {
			if _, err := addRef(counts, d, 1); err != nil {
				return err
			}
		}
		return nil
	})
}
