package vulndb

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Layout of the bbolt file. Matching reads only "index" under the queried
// (ecosystem, package) prefix; "records" says what each record put in the
// index, so that a re-import replaces it cleanly; "meta" holds the format,
// the version and the per-source download state.
const (
	bucketMeta    = "meta"
	bucketRecords = "records"
	bucketIndex   = "index"
	keyFormat     = "format"
	keyStatus     = "status"
)

// formatVersion names the on-disk layout and the matching rules. It is part
// of the content hash, so changing what import stores changes Version.
const formatVersion = "portcullis-vulndb/1"

// fileName is the bbolt file inside the directory given to Open.
const fileName = "vulndb.bolt"

// DB is an on-disk index of OSV records by (ecosystem, package). It is safe
// for concurrent use; imports are serialised and never seen half-done.
type DB struct {
	dir string
	// writeMu serialises Import and Update: one building a copy must not
	// lose another's writes when it swaps the copy in.
	writeMu sync.Mutex
	// mu guards bolt, which an import built beside replaces: readers hold
	// it shared for a transaction, the swap exclusively.
	mu   sync.RWMutex
	bolt *bolt.DB
	// stageBudget bounds the bytes an import stages before writing a
	// batch (defaultStageBudget; tests lower it).
	stageBudget int
	// fetchLimit bounds the downloads Update runs at once.
	fetchLimit int
	// maxIndexedSizes bounds a SizeIndex (maxIndexedSizes; tests lower it).
	maxIndexedSizes int
	// versions keeps the versions parsed (range bounds, installed
	// versions) across matches; Shared hands every DB it opens the
	// cache it keeps, so that outlives each open of the file.
	versions *versionCache
}

// Status describes the database's content.
type Status struct {
	Version    string         `json:"version"` // "" until the first import
	BuiltAt    time.Time      `json:"builtAt"` // when the content last changed
	Records    int            `json:"records"`
	Ecosystems map[string]int `json:"ecosystems"` // records per ecosystem, with release: "Debian:12"
	Sources    []SourceStatus `json:"sources,omitempty"`
	Signatures int            `json:"signatures,omitempty"` // ClamAV hash signatures
}

// SourceStatus is the download state of one Update source.
type SourceStatus struct {
	Ecosystem    string    `json:"ecosystem"`
	URL          string    `json:"url"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"lastModified,omitempty"`
	CheckedAt    time.Time `json:"checkedAt"`           // last request, whatever the answer
	ChangedAt    time.Time `json:"changedAt,omitempty"` // last download that was imported
	Records      int       `json:"records"`             // records in the last imported download
	Error        string    `json:"error,omitempty"`     // why the last check failed; "" if it did not
}

// storedStatus is the "status" value in the meta bucket.
type storedStatus struct {
	Hash       string                  `json:"hash"` // hex sha256 of the content
	BuiltAt    time.Time               `json:"builtAt"`
	Records    int                     `json:"records"`
	Ecosystems map[string]int          `json:"ecosystems"`
	Sources    map[string]SourceStatus `json:"sources,omitempty"` // by URL
	Signatures int                     `json:"signatures,omitempty"`
}

// ErrInUse means another process holds the database open.
var ErrInUse = errors.New("in use by another process")

// Open opens the database in dir, creating dir and an empty database if
// needed. It reads only the meta data, whatever the database's size.
func Open(dir string) (*DB, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create vulnerability database directory: %w", err)
	}
	path := filepath.Join(dir, fileName)
	b, err := openLocked(path)
	if err != nil {
		return nil, err
	}
	// Checked read-only: a write transaction would commit (and sync) on
	// every open, and the server opens the file for each use.
	err = b.View(checkFormat)
	if errors.Is(err, errNoFormat) {
		err = b.Update(initialize)
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("open vulnerability database %s: not a portcullis vulnerability database: %w (move it away and import again)", path, err)
	}
	// Downloads left by a process that died during Update: the file lock
	// above says no other process is using this directory.
	// So are copies a dying import was building.
	for _, pattern := range []string{downloadPattern, buildPattern} {
		if stale, err := filepath.Glob(filepath.Join(dir, pattern)); err == nil {
			for _, f := range stale {
				os.Remove(f)
			}
		}
	}
	return &DB{dir: dir, bolt: b, stageBudget: defaultStageBudget, fetchLimit: defaultFetchLimit, versions: newVersionCache(), maxIndexedSizes: maxIndexedSizes}, nil
}

// maxReopen bounds the retries of openLocked when imports keep replacing
// the file under it.
const maxReopen = 5

// openLocked opens the bbolt file at path with its lock held. bbolt locks
// the file; a second process (a CLI import while the server runs) gets a
// clear error after a second instead of hanging. An import that built its
// database beside this one renames it over path: a process that was
// waiting for the lock of the replaced file would get the lock of an
// unlinked file, so the file locked must still be the one at path.
func openLocked(path string) (*bolt.DB, error) {
	for range maxReopen {
		before, statErr := os.Stat(path)
		b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType})
		switch {
		case errors.Is(err, berrors.ErrTimeout):
			return nil, fmt.Errorf("open vulnerability database %s: %w", path, ErrInUse)
		case err != nil:
			return nil, fmt.Errorf("open vulnerability database %s: %w (damaged, or not a vulnerability database: move it away and import again)", path, err)
		}
		after, err := os.Stat(path)
		if err == nil && (statErr != nil || os.SameFile(before, after)) {
			// statErr: a new file, which bbolt created and locked.
			return b, nil
		}
		b.Close()
	}
	return nil, fmt.Errorf("open vulnerability database %s: replaced %d times while opening: %w", path, maxReopen, ErrInUse)
}

// Present reports whether dir holds a database file, without creating
// anything: readers that must not conjure an empty database ('db status',
// 'scan') ask first.
func Present(dir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dir, fileName))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("vulnerability database %s: %w", dir, err)
}

// errNoFormat: the file has no format marker (new, or some other program's).
var errNoFormat = errors.New("no format marker")

func checkFormat(tx *bolt.Tx) error {
	meta := tx.Bucket([]byte(bucketMeta))
	if meta == nil {
		return errNoFormat
	}
	if f := meta.Get([]byte(keyFormat)); string(f) != formatVersion {
		return fmt.Errorf("format is %q, want %q", f, formatVersion)
	}
	if tx.Bucket([]byte(bucketRecords)) == nil || tx.Bucket([]byte(bucketIndex)) == nil {
		return errors.New("buckets are missing")
	}
	return nil
}

// initialize makes an empty file a database; a file with other buckets is
// some other program's and stays untouched.
func initialize(tx *bolt.Tx) error {
	if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		return fmt.Errorf("has a bucket %q and no format marker", name)
	}); err != nil {
		return err
	}
	for _, name := range []string{bucketMeta, bucketRecords, bucketIndex} {
		if _, err := tx.CreateBucket([]byte(name)); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	return tx.Bucket([]byte(bucketMeta)).Put([]byte(keyFormat), []byte(formatVersion))
}

// Close closes the database; it waits for running matches to finish.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("close vulnerability database: %w", err)
	}
	return nil
}

// Version identifies the database content: "sha256:<content hash>@<time
// the content last changed>". It changes whenever an import changes what
// matching could answer, and not when identical data is imported again.
// "" for a database nothing was imported into.
func (db *DB) Version() string {
	st, err := db.Status()
	if err != nil {
		return ""
	}
	return st.Version
}

// Status reports the database's version, size and sources.
func (db *DB) Status() (Status, error) {
	st, err := db.readStoredStatus()
	if err != nil {
		return Status{}, err
	}
	out := Status{
		Version:    versionString(st),
		BuiltAt:    st.BuiltAt,
		Records:    st.Records,
		Ecosystems: st.Ecosystems,
		Signatures: st.Signatures,
	}
	if out.Ecosystems == nil {
		out.Ecosystems = map[string]int{}
	}
	for _, s := range st.Sources {
		out.Sources = append(out.Sources, s)
	}
	sortSources(out.Sources)
	return out, nil
}

// readStoredStatus reads the status as stored, in a read transaction.
func (db *DB) readStoredStatus() (storedStatus, error) {
	var st storedStatus
	db.mu.RLock()
	defer db.mu.RUnlock()
	err := db.bolt.View(func(tx *bolt.Tx) error {
		var err error
		st, err = readStatus(tx)
		return err
	})
	return st, err
}

func versionString(st storedStatus) string {
	if st.Hash == "" {
		return ""
	}
	return "sha256:" + st.Hash + "@" + st.BuiltAt.UTC().Format(time.RFC3339)
}

func readStatus(tx *bolt.Tx) (storedStatus, error) {
	var st storedStatus
	raw := tx.Bucket([]byte(bucketMeta)).Get([]byte(keyStatus))
	if raw == nil {
		return st, nil
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return st, fmt.Errorf("read vulnerability database status: %w", err)
	}
	return st, nil
}

func writeStatus(tx *bolt.Tx, st storedStatus) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode vulnerability database status: %w", err)
	}
	if err := tx.Bucket([]byte(bucketMeta)).Put([]byte(keyStatus), raw); err != nil {
		return fmt.Errorf("write vulnerability database status: %w", err)
	}
	return nil
}

// recordMeta is the "records" value: what one record put into the index.
type recordMeta struct {
	Hash   [32]byte
	Source string   // URL of the Update source it came from; "" for Import
	Keys   []string // "ecosystem\x00name" prefixes of its index entries
	// Raw is the sha256 of the bytes the record was parsed from: a
	// record that arrives again byte for byte is not parsed again, which
	// is most of a daily update. Zero in files written before it existed.
	Raw [32]byte
	// Zip fingerprints the archive entry the record was last read from
	// (zipFingerprint): an entry that arrives again with the same
	// fingerprint is not even decompressed. Zero when the record came
	// from elsewhere, and in files written before it existed.
	Zip [32]byte
}

// encode lays recordMeta out as hash | uvarint len + source | uvarint n |
// n × (uvarint len + key) | raw | zip: the content hash walks every record
// after each import, and this is quicker to read than JSON. raw and zip
// come last, so that metadata without them (older files) still decodes.
func (m recordMeta) encode() []byte {
	b := make([]byte, 0, 32+len(m.Source)+8+len(m.Keys)*24)
	b = append(b, m.Hash[:]...)
	b = binary.AppendUvarint(b, uint64(len(m.Source)))
	b = append(b, m.Source...)
	b = binary.AppendUvarint(b, uint64(len(m.Keys)))
	for _, k := range m.Keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
	}
	b = append(b, m.Raw[:]...)
	if m.Zip == ([32]byte{}) {
		// Not from an archive: 32 bytes less for each of an import's
		// records.
		return b
	}
	return append(b, m.Zip[:]...)
}

// decodeRecordMeta reads encoded metadata into a recordMeta of its own
// (strings copied out of b).
func decodeRecordMeta(b []byte) (recordMeta, error) {
	v, err := viewRecordMeta(b)
	if err != nil {
		return recordMeta{}, err
	}
	m := recordMeta{Hash: v.hash, Source: string(v.source), Raw: v.raw, Zip: v.zip}
	for _, k := range v.keys {
		m.Keys = append(m.Keys, string(k))
	}
	return m, nil
}

// recordMetaView is an encoded recordMeta read in place, without copying
// its strings: an update checks every record of every archive it reads
// against it, and the content hash walks every record after a change.
// Its slices are valid as long as the bytes it was read from.
type recordMetaView struct {
	hash   [32]byte
	source []byte
	keys   [][]byte // "ecosystem\x00name" prefixes
	raw    [32]byte
	zip    [32]byte
	// keyBuf holds keys for the usual one or two of them.
	keyBuf [2][]byte
}

// viewRecordMeta reads encoded metadata in place (see encode for the layout).
func viewRecordMeta(b []byte) (recordMetaView, error) {
	var m recordMetaView
	if len(b) < 32 {
		return m, errors.New("record metadata is truncated")
	}
	copy(m.hash[:], b)
	b = b[32:]
	next := func() ([]byte, error) {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return nil, errors.New("record metadata is truncated")
		}
		s := b[w : w+int(n)]
		b = b[w+int(n):]
		return s, nil
	}
	var err error
	if m.source, err = next(); err != nil {
		return m, err
	}
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)) {
		return m, errors.New("record metadata is truncated")
	}
	b = b[w:]
	m.keys = m.keyBuf[:0]
	for range n {
		k, err := next()
		if err != nil {
			return m, err
		}
		m.keys = append(m.keys, k)
	}
	switch len(b) {
	case 0:
	case 32:
		copy(m.raw[:], b)
	case 64:
		copy(m.raw[:], b)
		copy(m.zip[:], b[32:])
	default:
		return m, errors.New("record metadata has trailing bytes")
	}
	return m, nil
}

// hasRaw reports whether the record was stored from the bytes raw is the
// sha256 of (never for metadata written before the raw hash existed).
func (m *recordMetaView) hasRaw(raw [32]byte) bool {
	return m.raw == raw && m.raw != [32]byte{}
}

// countEcosystems adds one to counts for each ecosystem the record is
// indexed under (its keys are sorted, so an ecosystem's keys are
// adjacent). A count already present is updated without allocating.
func (m *recordMetaView) countEcosystems(counts map[string]int) {
	last := []byte{}
	for _, k := range m.keys {
		eco, _, _ := bytes.Cut(k, []byte{0})
		if bytes.Equal(eco, last) {
			continue
		}
		last = eco
		if n, ok := counts[string(eco)]; ok {
			counts[string(eco)] = n + 1
		} else {
			counts[string(eco)] = 1
		}
	}
}
