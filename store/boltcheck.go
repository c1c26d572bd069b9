package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// bbolt trusts its file: a damaged one makes it panic, or fault on a page
// past the end of its memory map, at open or much later (a background
// re-decision, the first write). checkStateFile looks at the file before
// bbolt opens it for writing, so a damaged file stops the start with an
// error that names it and says what to do.

// errCorruptState marks a state file that cannot be used.
var errCorruptState = errors.New("state file is corrupt")

// ErrStateLocked means another process holds the state file.
var ErrStateLocked = errors.New("state file is locked")

// bbolt's on-disk format (go.etcd.io/bbolt internal/common, version 2):
// every page starts with a 16-byte header (id u64, flags u16, count u16,
// overflow u32); pages 0 and 1 are meta pages whose body is magic u32,
// version u32, pageSize u32, flags u32, root bucket {root u64, sequence
// u64}, freelist u64, pgid u64 (the high-water mark), txid u64, then an
// FNV-64a checksum over the 56 bytes before it. Integers are in the host's
// byte order.
const (
	boltMagic         = 0xED0CDAED
	boltVersion       = 2
	boltPageHeader    = 16
	boltMetaSummed    = 56 // bytes of the meta the checksum covers
	boltMetaSize      = boltMetaSummed + 8
	boltMetaPageFlag  = 0x04
	boltNoFreelist    = ^uint64(0)
	minBoltPageSize   = 512
	maxBoltPageSize   = 64 << 10
	boltMetaProbeSize = boltPageHeader + boltMetaSize
)

// boltMeta is the part of a meta page the check needs.
type boltMeta struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64 // pages in use: the file must hold at least this many
	txid     uint64
}

// parseBoltMeta reads the meta page that starts at buf[0] (page id want);
// it returns an error saying what is wrong with it.
func parseBoltMeta(buf []byte, want uint64) (boltMeta, error) {
	if len(buf) < boltMetaProbeSize {
		return boltMeta{}, errors.New("short meta page")
	}
	e := binary.NativeEndian
	if id := e.Uint64(buf[0:]); id != want {
		return boltMeta{}, fmt.Errorf("meta page %d says it is page %d", want, id)
	}
	if flags := e.Uint16(buf[8:]); flags&boltMetaPageFlag == 0 {
		return boltMeta{}, fmt.Errorf("page %d is not a meta page (flags %#x)", want, flags)
	}
	m := buf[boltPageHeader : boltPageHeader+boltMetaSize]
	if magic := e.Uint32(m[0:]); magic != boltMagic {
		return boltMeta{}, fmt.Errorf("meta page %d: bad magic %#x", want, magic)
	}
	if v := e.Uint32(m[4:]); v != boltVersion {
		return boltMeta{}, fmt.Errorf("meta page %d: format version %d, want %d", want, v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:boltMetaSummed])
	if sum := e.Uint64(m[boltMetaSummed:]); sum != h.Sum64() {
		return boltMeta{}, fmt.Errorf("meta page %d: checksum mismatch", want)
	}
	meta := boltMeta{
		pageSize: e.Uint32(m[8:]),
		root:     e.Uint64(m[16:]),
		freelist: e.Uint64(m[32:]),
		pgid:     e.Uint64(m[40:]),
		txid:     e.Uint64(m[48:]),
	}
	ps := meta.pageSize
	if ps < minBoltPageSize || ps > maxBoltPageSize || ps&(ps-1) != 0 {
		return boltMeta{}, fmt.Errorf("meta page %d: page size %d", want, ps)
	}
	// bbolt's own writer refuses these; a file that has them was not
	// written by it, and bbolt would read past its map.
	if meta.pgid < 4 || meta.root < 2 || meta.root >= meta.pgid {
		return boltMeta{}, fmt.Errorf("meta page %d: root page %d outside the %d pages in use", want, meta.root, meta.pgid)
	}
	if meta.freelist != boltNoFreelist && (meta.freelist < 2 || meta.freelist >= meta.pgid) {
		return boltMeta{}, fmt.Errorf("meta page %d: freelist page %d outside the %d pages in use", want, meta.freelist, meta.pgid)
	}
	return meta, nil
}

// checkBoltHeader checks the meta pages and the size of the state file f.
// bbolt itself falls back to the other meta page when one is invalid (a
// torn write of the last commit): so does this check, which fails only
// when neither is usable or the file is shorter than the one bbolt would
// use says.
func checkBoltHeader(f io.ReaderAt, size int64) (boltMeta, error) {
	if size == 0 {
		return boltMeta{}, errors.New("the file is empty (0 bytes)")
	}
	first := make([]byte, boltMetaProbeSize)
	if _, err := f.ReadAt(first, 0); err != nil {
		return boltMeta{}, fmt.Errorf("read meta page 0: %w (the file has %d bytes)", err, size)
	}
	meta0, err0 := parseBoltMeta(first, 0)
	var meta1 boltMeta
	var err1 error
	// Page 1 sits one page size in; take the size from page 0 when it is
	// valid, else try every size bbolt could have used.
	sizes := []uint32{meta0.pageSize}
	if err0 != nil {
		sizes = sizes[:0]
		for ps := uint32(minBoltPageSize); ps <= maxBoltPageSize; ps *= 2 {
			sizes = append(sizes, ps)
		}
	}
	err1 = errors.New("meta page 1 not found")
	second := make([]byte, boltMetaProbeSize)
	for _, ps := range sizes {
		if int64(ps)+boltMetaProbeSize > size {
			break
		}
		if _, err := f.ReadAt(second, int64(ps)); err != nil {
			return boltMeta{}, fmt.Errorf("read meta page 1: %w", err)
		}
		if meta1, err1 = parseBoltMeta(second, 1); err1 == nil && meta1.pageSize == ps {
			break
		} else if err1 == nil {
			err1 = fmt.Errorf("meta page 1 found at %d but says pages are %d bytes", ps, meta1.pageSize)
		}
	}
	var use boltMeta
	switch {
	case err0 != nil && err1 != nil:
		return boltMeta{}, fmt.Errorf("no valid meta page: %v; %v", err0, err1)
	case err0 != nil:
		use = meta1
	case err1 != nil:
		use = meta0
	case meta1.txid > meta0.txid:
		use = meta1
	default:
		use = meta0
	}
	ps := int64(use.pageSize)
	if size%ps != 0 {
		return boltMeta{}, fmt.Errorf("truncated: %d bytes is not a whole number of %d-byte pages", size, ps)
	}
	if pages := uint64(size / ps); pages < use.pgid {
		return boltMeta{}, fmt.Errorf("truncated: %d pages, the database uses %d", pages, use.pgid)
	}
	return use, nil
}

// checkStateFile refuses a state file bbolt cannot safely open. A missing
// file is fine (it is created); a present one must have valid meta pages,
// its full size, a page tree that stays inside the file and references each
// page once (walked here with plain reads, so a loop or a wild page number
// is an error, not a hang or a fault), and then pass bbolt's own
// consistency check, run guarded against bbolt's panics and memory faults.
func checkStateFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open state %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err == nil {
		var meta boltMeta
		meta, err = checkBoltHeader(f, fi.Size())
		if err == nil {
			err = walkBoltPages(f, meta)
		}
		if err != nil {
			err = corruptState(path, err)
		}
	}
	f.Close()
	if err != nil {
		return err
	}
	return checkBoltConsistency(path)
}

func corruptState(path string, cause error) error {
	return fmt.Errorf("%w: %s: %v; move it aside (e.g. mv %s %s.corrupt) and start again: state (tags, scan results, verdicts) is rebuilt from the cache on the next pulls", errCorruptState, path, cause, path, path)
}

// stateLockTimeout is how long an open waits for another process's lock.
const stateLockTimeout = 2 * time.Second

// checkBoltConsistency opens the file as the server will and runs
// tx.Check. A panic or memory fault inside bbolt on this goroutine becomes
// an error naming the file (tx.Check runs its own goroutine with its own
// recover; the page walk before it keeps it inside the file).
func checkBoltConsistency(path string) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = corruptState(path, fmt.Errorf("bbolt failed reading it: %v", r))
		}
	}()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: stateLockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return fmt.Errorf("open state %s: another portcullis is using this data directory (%w)", path, ErrStateLocked)
	}
	if err != nil {
		return corruptState(path, err)
	}
	defer db.Close()
	var problems []error
	err = db.View(func(tx *bolt.Tx) error {
		for cerr := range tx.Check() {
			if len(problems) < 5 { // enough to say what is wrong; drain the rest
				problems = append(problems, cerr)
			}
		}
		return nil
	})
	if err == nil && len(problems) > 0 {
		err = errors.Join(problems...)
	}
	if err != nil {
		return corruptState(path, fmt.Errorf("consistency check: %w", err))
	}
	return nil
}
