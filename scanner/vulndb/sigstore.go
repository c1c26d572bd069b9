package vulndb

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Storage of ClamAV hash signatures, beside the OSV index in the same file:
//
//	"sigfiles"   one bucket per imported signature file, by its base name
//	             ("main.hsb"); keys size(8, big endian; "*" is all ones) |
//	             alg(1) | digest, values the signature's name. Keys sort
//	             by size first: the candidates for a file size are one
//	             seek, as ClamAV indexes them.
//	"sigsources" base name → sha256 of the file (32) | uvarint count.
//
// Importing a file replaces what a file of the same base name put there
// before (as ClamAV replaces a database file): an updated feed is
// imported again and its withdrawn signatures go. Both buckets are made
// by the first signature import; a database without them has none.
const (
	bucketSigFiles   = "sigfiles"
	bucketSigSources = "sigsources"
)

// maxSignatureFiles bounds the signature files a database holds: a lookup
// reads each file's bucket.
const maxSignatureFiles = 256

// anySizeKey is the size part of a "*" signature's key.
const anySizeKey = ^uint64(0)

// signatureKey lays a signature's key out (see above).
func signatureKey(size int64, alg HashAlg, digest []byte) []byte {
	k := make([]byte, 9, 9+len(digest))
	s := anySizeKey
	if size != AnySize {
		s = uint64(size)
	}
	binary.BigEndian.PutUint64(k, s)
	k[8] = byte(alg)
	return append(k, digest...)
}

// stagedSignatures is what an import of signature files stages: flush
// empties each file's bucket the first time it sees it, then writes the
// signatures and the files' metadata.
type stagedSignatures struct {
	reset   []string                // files whose bucket is to be emptied (first flush after they began)
	sigs    map[string][]kv         // by file
	sources map[string]sourceRecord // metadata of files read to the end
}

type sourceRecord struct {
	sum   [32]byte
	count int
}

func (m sourceRecord) encode() []byte {
	return binary.AppendUvarint(bytes.Clone(m.sum[:]), uint64(m.count))
}

func decodeSourceRecord(b []byte) (sourceRecord, error) {
	var m sourceRecord
	if len(b) < 33 {
		return m, errors.New("signature file metadata is truncated")
	}
	copy(m.sum[:], b)
	n, w := binary.Uvarint(b[32:])
	if w <= 0 || w != len(b)-32 || n > 1<<40 {
		return m, errors.New("signature file metadata is malformed")
	}
	m.count = int(n)
	return m, nil
}

// signatureKindOf tells a signature file by its extension; 0 for any other
// file.
func signatureKindOf(path string) SignatureKind {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".hdb":
		return SignatureHDB
	case ".hsb":
		return SignatureHSB
	}
	return 0
}

// importSignatures streams one .hsb or .hdb file into the stage. A
// malformed line refuses the whole import (the caller discards it): a
// feed half imported would look complete. A file stored from the very
// same bytes is left as it is.
func (im *importer) importSignatures(path string, kind SignatureKind) error {
	source := filepath.Base(path)
	if _, dup := im.sigSeen[source]; dup {
		return fmt.Errorf("import signatures: two files named %s: signatures are stored by file name, rename one", source)
	}
	im.sigSeen[source] = struct{}{}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("import signatures from %s: %w", path, err)
	}
	defer f.Close()
	// First pass: the file's hash, to leave an unchanged file alone.
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("import signatures: read %s: %w", path, err)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	if im.storedSource != nil {
		old, ok, err := im.storedSource(source)
		if err != nil {
			return fmt.Errorf("import signatures from %s: %w", path, err)
		}
		if ok && old.sum == sum {
			im.stats.Signatures += old.count
			return nil
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("import signatures: read %s: %w", path, err)
	}
	im.sigs.reset = append(im.sigs.reset, source)
	sr := newSignatureReader(f, kind)
	count := 0
	for {
		if err := im.ctx.Err(); err != nil {
			return fmt.Errorf("import signatures: %w", err)
		}
		sig, err := sr.next()
		if errors.Is(err, errNoMoreSignatures) {
			break
		}
		if err != nil {
			return fmt.Errorf("import signatures from %s: %w (nothing imported)", path, err)
		}
		count++
		k := signatureKey(sig.Size, sig.Alg, sig.Digest)
		im.sigs.sigs[source] = append(im.sigs.sigs[source], kv{k, []byte(sig.Name)})
		im.stagedBytes += len(k) + len(sig.Name) + 48
		im.stats.Signatures++
		if count%4096 == 0 {
			im.progress.update("importing: %d signatures", im.stats.Signatures)
		}
		if err := im.spillIfFull(); err != nil {
			return err
		}
	}
	im.sigs.sources[source] = sourceRecord{sum: sum, count: count}
	return nil
}

// flushSignatures writes the staged signatures, and empties the stage. It
// reports whether anything changed.
func (im *importer) flushSignatures(tx *bolt.Tx) (bool, error) {
	s := &im.sigs
	if len(s.reset) == 0 && len(s.sigs) == 0 && len(s.sources) == 0 {
		return false, nil
	}
	files, err := tx.CreateBucketIfNotExists([]byte(bucketSigFiles))
	if err != nil {
		return false, fmt.Errorf("create bucket %s: %w", bucketSigFiles, err)
	}
	sources, err := tx.CreateBucketIfNotExists([]byte(bucketSigSources))
	if err != nil {
		return false, fmt.Errorf("create bucket %s: %w", bucketSigSources, err)
	}
	for _, name := range s.reset {
		if files.Bucket([]byte(name)) != nil {
			if err := files.DeleteBucket([]byte(name)); err != nil {
				return false, fmt.Errorf("replace signatures of %s: %w", name, err)
			}
		}
		if err := sources.Delete([]byte(name)); err != nil {
			return false, fmt.Errorf("replace signatures of %s: %w", name, err)
		}
		if _, err := files.CreateBucket([]byte(name)); err != nil {
			return false, fmt.Errorf("store signatures of %s: %w", name, err)
		}
	}
	if n := files.Stats().BucketN - 1; n > maxSignatureFiles {
		return false, fmt.Errorf("more than %d signature files (%d): merge some", maxSignatureFiles, n)
	}
	names := make([]string, 0, len(s.sigs))
	for name := range s.sigs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		b := files.Bucket([]byte(name))
		if b == nil {
			return false, fmt.Errorf("store signatures of %s: its bucket is missing", name)
		}
		if err := putSorted(b, s.sigs[name]); err != nil {
			return false, fmt.Errorf("store signatures of %s: %w", name, err)
		}
	}
	for name, rec := range s.sources {
		if err := sources.Put([]byte(name), rec.encode()); err != nil {
			return false, fmt.Errorf("store signatures of %s: %w", name, err)
		}
	}
	*s = newStagedSignatures()
	return true, nil
}

func newStagedSignatures() stagedSignatures {
	return stagedSignatures{sigs: map[string][]kv{}, sources: map[string]sourceRecord{}}
}

// storedSourceIn reads a signature file's metadata in tx.
func storedSourceIn(tx *bolt.Tx, name string) (sourceRecord, bool, error) {
	b := tx.Bucket([]byte(bucketSigSources))
	if b == nil {
		return sourceRecord{}, false, nil
	}
	v := b.Get([]byte(name))
	if v == nil {
		return sourceRecord{}, false, nil
	}
	m, err := decodeSourceRecord(v)
	if err != nil {
		return m, false, fmt.Errorf("read signature file %s: %w", name, err)
	}
	return m, true, nil
}

// hashSignatureSources adds the signature files to the content hash and
// returns how many signatures they hold.
func hashSignatureSources(tx *bolt.Tx, h io.Writer) (int, error) {
	b := tx.Bucket([]byte(bucketSigSources))
	if b == nil {
		return 0, nil
	}
	total := 0
	err := b.ForEach(func(name, v []byte) error {
		m, err := decodeSourceRecord(v)
		if err != nil {
			return fmt.Errorf("read signature file %s: %w", name, err)
		}
		h.Write([]byte("signatures\x00"))
		h.Write(name)
		h.Write([]byte{0})
		h.Write(m.sum[:])
		total += m.count
		return nil
	})
	return total, err
}
