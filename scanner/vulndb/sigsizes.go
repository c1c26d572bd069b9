package vulndb

import (
	"encoding/binary"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// maxIndexedSizes bounds a SizeIndex: about 9 bytes each in memory. Real
// feeds have far fewer distinct sizes than signatures.
const maxIndexedSizes = 4 << 20

// SizeIndex is the set of file sizes the hash signatures have, in memory:
// a long-lived scanner asks it for every regular file without touching the
// database file, and opens the database only for the rare candidates
// (SignatureMatcher.Match). Read-only once built; safe for concurrent use.
type SizeIndex struct {
	sizes   []int64 // sorted
	needs   []Need  // parallel to sizes
	anySize Need    // what the "*" signatures need; 0 if none
	version string  // SignatureMatcher.Version of the set it was built from
}

// SignatureSizes builds the size index of the signatures in the database
// (one seek per size and hash algorithm). More than 4,194,304 distinct
// sizes is an error.
func (db *DB) SignatureSizes() (*SizeIndex, error) {
	m, err := db.SignatureMatcher(0)
	if err != nil {
		return nil, err
	}
	idx := &SizeIndex{anySize: m.anySize, version: m.Version()}
	if m.Empty() {
		return idx, nil
	}
	bySize := map[int64]Need{}
	err = db.view(func(tx *bolt.Tx) error {
		files := tx.Bucket([]byte(bucketSigFiles))
		if files == nil {
			return nil
		}
		for _, name := range m.files {
			b := files.Bucket(name)
			if b == nil {
				continue
			}
			c := b.Cursor()
			for k, _ := c.First(); k != nil && len(k) > 8; {
				size := binary.BigEndian.Uint64(k)
				if size == anySizeKey {
					break // the last keys; anySize has them
				}
				alg := k[8]
				bySize[int64(size)] |= needOf(HashAlg(alg))
				if len(bySize) > db.maxIndexedSizes {
					return fmt.Errorf("more than %d distinct signature sizes", db.maxIndexedSizes)
				}
				// Past this size and algorithm in one seek.
				var next [9]byte
				binary.BigEndian.PutUint64(next[:], size)
				next[8] = alg + 1
				if alg == 0xff {
					binary.BigEndian.PutUint64(next[:], size+1)
					next[8] = 0
				}
				k, _ = c.Seek(next[:])
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index hash signatures by size: %w", err)
	}
	idx.sizes = make([]int64, 0, len(bySize))
	for s := range bySize {
		idx.sizes = append(idx.sizes, s)
	}
	slices.Sort(idx.sizes)
	idx.needs = make([]Need, len(idx.sizes))
	for i, s := range idx.sizes {
		idx.needs[i] = bySize[s]
	}
	return idx, nil
}

// Candidate is SignatureMatcher.Candidate answered from memory.
func (x *SizeIndex) Candidate(size, hashMaxFile int64) Need {
	if x == nil || size < 0 {
		return 0
	}
	var need Need
	if x.anySize != 0 && size <= hashMaxFile {
		need = x.anySize
	}
	if i, ok := slices.BinarySearch(x.sizes, size); ok {
		need |= x.needs[i]
	}
	if need != 0 {
		need |= NeedSHA256
	}
	return need
}

// Version is the signature set's (SignatureMatcher.Version): "" for none.
func (x *SizeIndex) Version() string {
	if x == nil {
		return ""
	}
	return x.version
}

// Len is the number of distinct sizes indexed.
func (x *SizeIndex) Len() int {
	if x == nil {
		return 0
	}
	return len(x.sizes)
}
