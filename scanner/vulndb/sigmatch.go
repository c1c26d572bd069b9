package vulndb

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Need says which hashes of a file the signatures of its size need.
type Need uint8

// Hashes a candidate file needs. A candidate always needs NeedSHA256: a
// finding names the file by it, whatever hash matched.
const (
	NeedMD5 Need = 1 << iota
	NeedSHA1
	NeedSHA256
)

func needOf(alg HashAlg) Need {
	switch alg {
	case AlgMD5:
		return NeedMD5
	case AlgSHA1:
		return NeedSHA1
	}
	return NeedSHA256
}

// FileHashes are the hashes HashFile computed (Have says which).
type FileHashes struct {
	Have   Need
	MD5    [md5.Size]byte
	SHA1   [sha1.Size]byte
	SHA256 [sha256.Size]byte
}

// SHA256Hex is the file's sha256 in hex.
func (h FileHashes) SHA256Hex() string { return hex.EncodeToString(h.SHA256[:]) }

// HashFile reads r to its end and computes the hashes need asks for, no
// others; it returns them and the bytes read.
func HashFile(r io.Reader, need Need) (FileHashes, int64, error) {
	var out FileHashes
	var hs []hash.Hash
	var md, s1, s256 hash.Hash
	if need&NeedMD5 != 0 {
		md = md5.New()
		hs = append(hs, md)
	}
	if need&NeedSHA1 != 0 {
		s1 = sha1.New()
		hs = append(hs, s1)
	}
	if need&NeedSHA256 != 0 {
		s256 = sha256.New()
		hs = append(hs, s256)
	}
	ws := make([]io.Writer, len(hs))
	for i, h := range hs {
		ws[i] = h
	}
	n, err := io.Copy(io.MultiWriter(ws...), r)
	if err != nil {
		return out, n, fmt.Errorf("hash file: %w", err)
	}
	if md != nil {
		md.Sum(out.MD5[:0])
	}
	if s1 != nil {
		s1.Sum(out.SHA1[:0])
	}
	if s256 != nil {
		s256.Sum(out.SHA256[:0])
	}
	out.Have = need
	return out, n, nil
}

// maxSizeCache bounds the sizes a SignatureMatcher remembers.
const maxSizeCache = 1 << 14

// SignatureMatcher answers, for one scan, which files the hash signatures
// could match and which they do match. It is safe for concurrent use
// (one per scan, shared by its layer workers); the DB must stay open
// while it is used. Create it with DB.SignatureMatcher.
type SignatureMatcher struct {
	db          *DB
	hashMaxFile int64
	// files are the signature files' bucket names, read once.
	files [][]byte
	// anySize is what the "*" signatures need (0: there are none).
	anySize Need
	// version identifies the signature set (see Version).
	version string

	mu    sync.Mutex
	sizes map[int64]Need // Candidate answers by size (bounded)
}

// SignatureMatcher reads which signature files the database holds and
// what its "*" signatures need: files up to hashMaxFile bytes
// (scan.hash_max_file) are candidates for those. A database without
// signatures gives a matcher whose Candidate answers at once.
func (db *DB) SignatureMatcher(hashMaxFile int64) (*SignatureMatcher, error) {
	m := &SignatureMatcher{db: db, hashMaxFile: hashMaxFile, sizes: map[int64]Need{}}
	err := db.view(func(tx *bolt.Tx) error {
		files := tx.Bucket([]byte(bucketSigFiles))
		if files == nil {
			return nil
		}
		h := sha256.New()
		if _, err := hashSignatureSources(tx, h); err != nil {
			return err
		}
		m.version = "sha256:" + hex.EncodeToString(h.Sum(nil))
		return files.ForEach(func(name, v []byte) error {
			if v != nil {
				return nil // not a bucket
			}
			m.files = append(m.files, bytes.Clone(name))
			m.anySize |= needAt(files.Bucket(name), anySizeKey)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read hash signatures: %w", err)
	}
	return m, nil
}

// view runs fn in a read transaction on the database in force.
func (db *DB) view(fn func(tx *bolt.Tx) error) error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.bolt.View(fn)
}

// needAt reads what the signatures of one size in one file's bucket need.
// A size with many signatures costs no more than a few seeks.
func needAt(b *bolt.Bucket, size uint64) Need {
	var prefix [8]byte
	binary.BigEndian.PutUint64(prefix[:], size)
	var need Need
	c := b.Cursor()
	// One seek per algorithm present: keys sort by size, then algorithm.
	k, _ := c.Seek(prefix[:])
	for k != nil && len(k) > 8 && bytes.HasPrefix(k, prefix[:]) {
		alg := k[8]
		need |= needOf(HashAlg(alg))
		if alg == 0xff {
			break
		}
		k, _ = c.Seek(append(prefix[:], alg+1))
	}
	return need
}

// Empty reports whether the database has no signatures at all.
func (m *SignatureMatcher) Empty() bool { return len(m.files) == 0 }

// Version identifies the set of signatures the matcher reads (the names
// and contents of the signature files imported), "" when there are none:
// what a per-layer result that includes hash signature findings must be
// keyed by, so that new signatures are applied to layers seen before.
func (m *SignatureMatcher) Version() string {
	if len(m.files) == 0 {
		return ""
	}
	return m.version
}

// Candidate says whether a regular file of this size can match a
// signature, and which hashes to compute if so (0: none, do not hash).
// A file is a candidate when a signature has its size, or when "*"
// signatures exist and it is at most hashMaxFile bytes.
func (m *SignatureMatcher) Candidate(size int64) (Need, error) {
	if len(m.files) == 0 || size < 0 {
		return 0, nil
	}
	need := Need(0)
	if m.anySize != 0 && size <= m.hashMaxFile {
		need = m.anySize
	}
	m.mu.Lock()
	cached, ok := m.sizes[size]
	m.mu.Unlock()
	if !ok {
		err := m.db.view(func(tx *bolt.Tx) error {
			files := tx.Bucket([]byte(bucketSigFiles))
			if files == nil {
				return nil
			}
			for _, name := range m.files {
				if b := files.Bucket(name); b != nil {
					cached |= needAt(b, uint64(size))
				}
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("look up hash signatures for size %d: %w", size, err)
		}
		m.mu.Lock()
		if len(m.sizes) >= maxSizeCache {
			clear(m.sizes) // a bound, not an eviction policy: sizes repeat within a scan
		}
		m.sizes[size] = cached
		m.mu.Unlock()
	}
	need |= cached
	if need != 0 {
		need |= NeedSHA256
	}
	return need, nil
}

// Match returns the names of the signatures a file of this size with these
// hashes matches, sorted and without repeats; none is nil.
func (m *SignatureMatcher) Match(size int64, h FileHashes) ([]string, error) {
	if len(m.files) == 0 || size < 0 {
		return nil, nil
	}
	type probe struct {
		alg    HashAlg
		digest []byte
	}
	var probes []probe
	if h.Have&NeedMD5 != 0 {
		probes = append(probes, probe{AlgMD5, h.MD5[:]})
	}
	if h.Have&NeedSHA1 != 0 {
		probes = append(probes, probe{AlgSHA1, h.SHA1[:]})
	}
	if h.Have&NeedSHA256 != 0 {
		probes = append(probes, probe{AlgSHA256, h.SHA256[:]})
	}
	var keys [][]byte
	for _, p := range probes {
		keys = append(keys, signatureKey(size, p.alg, p.digest))
		if m.anySize != 0 && size <= m.hashMaxFile {
			keys = append(keys, signatureKey(AnySize, p.alg, p.digest))
		}
	}
	var names []string
	err := m.db.view(func(tx *bolt.Tx) error {
		files := tx.Bucket([]byte(bucketSigFiles))
		if files == nil {
			return nil
		}
		for _, name := range m.files {
			b := files.Bucket(name)
			if b == nil {
				continue
			}
			for _, k := range keys {
				if v := b.Get(k); v != nil {
					names = append(names, string(v))
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("match hash signatures: %w", err)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// MalwareFileFinding is the finding for a known-bad file: signature is the
// hash signature's (or clamd's) name, path the file's path in the image,
// layer the digest of the layer that holds it, sha256 the file's sha256
// in hex.
func MalwareFileFinding(signature, path, layer, sha256 string) Finding {
	return Finding{
		Kind:     KindMalware,
		ID:       signature,
		Summary:  "known-bad file",
		Severity: "CRITICAL",
		Path:     path,
		Layer:    layer,
		SHA256:   sha256,
	}
}
