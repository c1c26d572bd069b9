package vulndb

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// buildPattern names the copies built beside the database in force; one
// left by a process that died while building is removed by Open.
const buildPattern = fileName + ".new-*"

// defaultStageBudget bounds what an import stages in memory before it
// writes a batch: about 25 MB of encoded entries, so that with bbolt's own
// copy of the batch a full-size import stays well under 400 MB.
const defaultStageBudget = 24 << 20

// builder writes one import: in place when its changes fit in the stage
// budget, else into a copy that replaces the database in force at the end.
// It is used with db.writeMu held, so db.bolt does not change meanwhile.
type builder struct {
	db      *DB
	im      *importer
	copy    *bolt.DB // nil until the first batch is written
	path    string   // of the copy
	changed bool     // a batch already written changed the content
	swapped bool
	// rtx is the read transaction that stored answers from: one for
	// the hundreds of thousands of lookups of an update instead of one
	// each. It is ended before anything writes to the target (a write
	// that grows the file waits for every reader to end).
	rtx *bolt.Tx
}

func (db *DB) newBuilder(im *importer) *builder {
	w := &builder{db: db, im: im}
	im.budget = db.stageBudget
	im.stored = w.stored
	im.storedView = w.storedView
	im.spill = w.spill
	im.storedSource = w.storedSource
	return w
}

// target is where the import is being written.
func (w *builder) target() *bolt.DB {
	if w.copy != nil {
		return w.copy
	}
	return w.db.bolt
}

func (w *builder) stored(id string) (m recordMeta, ok bool, err error) {
	tx, err := w.reader()
	if err != nil {
		return recordMeta{}, false, err
	}
	return storedMeta(tx.Bucket([]byte(bucketRecords)), id)
}

func (w *builder) storedSource(name string) (sourceRecord, bool, error) {
	tx, err := w.reader()
	if err != nil {
		return sourceRecord{}, false, err
	}
	return storedSourceIn(tx, name)
}

// storedView is stored without copying: v is valid until the next write
// (spill or finish), and only inside fn.
func (w *builder) storedView(id string, fn func(v recordMetaView) error) (ok bool, err error) {
	tx, err := w.reader()
	if err != nil {
		return false, err
	}
	raw := tx.Bucket([]byte(bucketRecords)).Get([]byte(id))
	if raw == nil {
		return false, nil
	}
	v, err := viewRecordMeta(raw)
	if err != nil {
		return false, fmt.Errorf("read stored record %s: %w", id, err)
	}
	return true, fn(v)
}

// reader returns the read transaction on the target, beginning it if
// needed.
func (w *builder) reader() (*bolt.Tx, error) {
	if w.rtx == nil {
		tx, err := w.target().Begin(false)
		if err != nil {
			return nil, fmt.Errorf("read vulnerability database: %w", err)
		}
		w.rtx = tx
	}
	return w.rtx, nil
}

// endRead ends the read transaction, before a write or a swap.
func (w *builder) endRead() {
	if w.rtx != nil {
		w.rtx.Rollback()
		w.rtx = nil
	}
}

// spill writes the staged batch into the copy, making the copy first.
func (w *builder) spill() error {
	w.endRead()
	if w.copy == nil {
		if err := w.makeCopy(); err != nil {
			return err
		}
	}
	return w.copy.Update(func(tx *bolt.Tx) error {
		changed, err := w.im.flush(tx, false)
		w.changed = w.changed || changed
		return err
	})
}

func (w *builder) makeCopy() error {
	f, err := os.CreateTemp(w.db.dir, buildPattern)
	if err != nil {
		return fmt.Errorf("build vulnerability database beside the one in force: %w", err)
	}
	w.path = f.Name()
	// A plain file copy (copy_file_range) rather than bbolt's page by page
	// one: this process does not map the whole file in to read it. The
	// file is consistent: writeMu and the file lock exclude every other
	// writer, and bbolt has written every committed transaction.
	err = copyFile(f, filepath.Join(w.db.dir, fileName))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy vulnerability database to %s: %w", w.path, err)
	}
	// Not synced per batch: nothing reads the copy before finish syncs it
	// once, and a crash leaves only a file that Open removes.
	b, err := bolt.Open(w.path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("open vulnerability database copy %s: %w", w.path, err)
	}
	w.copy = b
	return nil
}

// finish writes the last batch and the status; a copy is synced and
// renamed over the database in force, which this DB then reads.
func (w *builder) finish(edit func(*storedStatus)) error {
	w.endRead()
	write := func(tx *bolt.Tx) error {
		changed, err := w.im.flush(tx, true)
		if err != nil {
			return err
		}
		return finishImport(tx, w.changed || changed, edit)
	}
	if w.copy == nil {
		return w.db.bolt.Update(write)
	}
	if err := w.copy.Update(write); err != nil {
		return err
	}
	if err := w.copy.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", w.path, err)
	}
	live := filepath.Join(w.db.dir, fileName)
	// The copy's bbolt handle keeps its file lock through the rename: no
	// other process can open the new file before this one reads it.
	if err := os.Rename(w.path, live); err != nil {
		return fmt.Errorf("replace vulnerability database: %w", err)
	}
	w.swapped = true
	syncDir(w.db.dir)
	w.db.mu.Lock()
	old := w.db.bolt
	w.db.bolt = w.copy
	w.db.mu.Unlock()
	// The new file is in force: failing to close the replaced one (an
	// unlinked file) changes nothing for it, and must not report the
	// import as failed.
	old.Close()
	return nil
}

// discard removes an unfinished copy; the database in force is untouched.
func (w *builder) discard() {
	w.endRead()
	if w.copy == nil || w.swapped {
		return
	}
	// Errors are not reported: the import already failed for a reason
	// worth more, and a leftover copy is removed by the next Open.
	w.copy.Close()
	os.Remove(w.path)
}

func copyFile(dst *os.File, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = io.Copy(dst, in)
	return err
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
