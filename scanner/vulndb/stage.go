package vulndb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// importer streams the records of one Import or Update into the database.
//
// A record whose stored copy has the same content is not staged at all;
// the others are staged in memory (already encoded) and written by flush
// in key order. bbolt splits nodes only at commit, so inside one big
// transaction a random-order insert shifts the whole in-memory node:
// 300,000 records took two minutes that way, against seconds in order.
//
// What is staged is bounded by budget bytes. An import whose changes fit
// is written in one transaction on the database in force. One that does
// not (a first import of osv.dev's 300,000 records) is built beside it:
// the file is copied, the staged batches are written into the copy as
// they fill, and the finished copy is renamed over the file in force
// (builder). Either way, readers see the old or the new database, never a
// mix, and memory stays bounded whatever the input's size.
type importer struct {
	ctx      context.Context
	source   string                         // where the records being read come from: an Update URL, "" for Import
	staged   map[string]*staged             // by id; a later copy replaces an earlier one
	seen     map[string]map[string]struct{} // Update source URL → ids its archive lists
	stats    ImportStats
	progress *progress

	// stored reads a record's metadata from where the import is being
	// written (the database in force, or the copy being built).
	stored func(id string) (recordMeta, bool, error)
	// storedView is stored read in place (see builder.storedView).
	storedView func(id string, fn func(recordMetaView) error) (bool, error)
	// spill writes the staged batch when it exceeds budget.
	spill       func() error
	budget      int
	stagedBytes int
	// zip is the fingerprint of the archive entry being read (zero when
	// the record is not from an archive): stored with the record.
	zip [32]byte

	// ClamAV hash signature files (sigstore.go): what is staged, the
	// file names read so far, and the stored metadata of a file.
	sigs         stagedSignatures
	sigSeen      map[string]struct{}
	storedSource func(name string) (sourceRecord, bool, error)
}

// staged is one record ready to be written.
type staged struct {
	source   string
	hash     [32]byte
	raw      [32]byte // sha256 of the bytes it was parsed from
	zip      [32]byte // fingerprint of the archive entry (recordMeta.Zip)
	withdraw bool
	keys     []string // "ecosystem\x00name" of each index entry
	values   [][]byte // the encoded entries, parallel to keys
}

// stagedOverhead approximates what one staged record costs besides its
// keys and values (map entry, struct, slice headers).
const stagedOverhead = 160

func newImporter(ctx context.Context, pl *progress) *importer {
	return &importer{
		ctx:      ctx,
		staged:   map[string]*staged{},
		seen:     map[string]map[string]struct{}{},
		stats:    ImportStats{Ecosystems: map[string]int{}},
		progress: pl,
		sigs:     newStagedSignatures(),
		sigSeen:  map[string]struct{}{},
	}
}

// beginSource starts reading the whole archive of an Update source: stored
// records of that source that it does not list are removed by flush.
func (im *importer) beginSource(url string) {
	im.source = url
	im.seen[url] = map[string]struct{}{}
}

func (im *importer) markSeen(id string) {
	if ids, ok := im.seen[im.source]; ok {
		ids[id] = struct{}{}
	}
}

// skip counts a refused record and keeps the reason for the report.
func (im *importer) skip(name string, err error) {
	im.stats.Skipped++
	if len(im.stats.Problems) < maxProblems {
		im.stats.Problems = append(im.stats.Problems, name+": "+err.Error())
	}
}

// add parses one record and stages it unless it is stored unchanged. idHint
// is the id its file name suggests, "" if none: a record stored from the
// very same bytes is taken as it is, without parsing it again. Only a
// cancelled context or a failed write is an error; a bad record is
// skipped.
func (im *importer) add(name, idHint string, data []byte) error {
	if err := im.ctx.Err(); err != nil {
		return fmt.Errorf("import vulnerability records: %w", err)
	}
	raw := sha256.Sum256(data)
	if done, err := im.same(idHint, raw); done || err != nil {
		return err
	}
	rec, err := parseRecord(data)
	if err != nil {
		im.skip(name, err)
		// An updated source keeps the stored copy of a record that it
		// now ships broken, rather than dropping the vulnerability.
		var idOnly struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(data, &idOnly) == nil && idOnly.ID != "" {
			im.markSeen(idOnly.ID)
		}
		return nil
	}
	im.markSeen(rec.ID)
	var last string
	for _, e := range rec.Entries {
		if e.Ecosystem != last {
			im.stats.Ecosystems[e.Ecosystem]++
			last = e.Ecosystem
		}
	}
	if !rec.Withdraw {
		im.stats.Records++
	}
	im.progress.update("importing: %d records, %d skipped", im.stats.Records, im.stats.Skipped)
	if err := im.stage(rec, raw); err != nil {
		return err
	}
	return im.spillIfFull()
}

// same handles a record stored from the very bytes raw is the hash of:
// counted and listed, its source updated if it moved, nothing parsed. It
// reports whether the record was handled.
//
// It reads the stored metadata in place: it runs for every record of
// every archive an update downloads, and most are unchanged.
func (im *importer) same(id string, raw [32]byte) (bool, error) {
	if im.storedView == nil || id == "" {
		return false, nil
	}
	handled := false
	_, err := im.storedView(id, func(old recordMetaView) error {
		if !old.hasRaw(raw) {
			return nil
		}
		handled = true
		im.markSeen(id)
		old.countEcosystems(im.stats.Ecosystems)
		im.stats.Records++
		im.progress.update("importing: %d records, %d skipped", im.stats.Records, im.stats.Skipped)
		im.unstage(id)
		if string(old.source) != im.source || old.zip != im.zip {
			// flush sees the same hash and rewrites only the metadata.
			im.put(id, &staged{source: im.source, hash: old.hash, raw: raw, zip: im.zip})
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("import vulnerability records: %w", err)
	}
	if !handled {
		return false, nil
	}
	return true, im.spillIfFull()
}

func (im *importer) spillIfFull() error {
	if im.spill != nil && im.stagedBytes > im.budget {
		return im.spill()
	}
	return nil
}

func (im *importer) unstage(id string) {
	if prev, ok := im.staged[id]; ok {
		im.stagedBytes -= stagedSize(prev)
		delete(im.staged, id)
	}
}

func (im *importer) put(id string, st *staged) {
	im.staged[id] = st
	im.stagedBytes += stagedSize(st)
}

// stage keeps what rec changes: nothing when it is stored as it is, only
// the new source and raw hash when that is all that changed.
func (im *importer) stage(rec *record, raw [32]byte) error {
	im.unstage(rec.ID)
	st := &staged{source: im.source, hash: rec.Hash, raw: raw, zip: im.zip, withdraw: rec.Withdraw}
	if im.stored != nil {
		old, hasOld, err := im.stored(rec.ID)
		if err != nil {
			return fmt.Errorf("import vulnerability records: %w", err)
		}
		switch {
		case !hasOld && rec.Withdraw:
			return nil
		case hasOld && !rec.Withdraw && old.Hash == rec.Hash:
			if old.Source != im.source || old.Raw != raw || old.Zip != im.zip {
				// flush sees the same hash and rewrites only the
				// metadata.
				im.put(rec.ID, st)
			}
			return nil
		}
	}
	if !rec.Withdraw {
		for _, e := range rec.Entries {
			// The hash is of e.Encoded (JSON); matching reads the
			// binary form, which decodes several times faster.
			st.keys = append(st.keys, e.Ecosystem+"\x00"+e.Name)
			st.values = append(st.values, encodeEntry(&e.Entry))
		}
	}
	im.put(rec.ID, st)
	return nil
}

func stagedSize(st *staged) int {
	n := stagedOverhead + len(st.source)
	for i, k := range st.keys {
		n += len(k) + len(st.values[i]) + 48
	}
	return n
}

// kv is one pending bbolt write.
type kv struct{ key, val []byte }

// flush writes what was staged, and empties the stage: deletions first,
// then insertions, each in key order. final also removes the records an
// updated source no longer lists, which is known only once every archive
// was read. It reports whether the content changed.
func (im *importer) flush(tx *bolt.Tx, final bool) (bool, error) {
	records, index := tx.Bucket([]byte(bucketRecords)), tx.Bucket([]byte(bucketIndex))
	var delIndex, delRecords [][]byte
	var putIndex, putRecords []kv
	changed := false // content, as opposed to which source a record came from
	ids := make([]string, 0, len(im.staged))
	for id := range im.staged {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		st := im.staged[id]
		old, hasOld, err := storedMeta(records, id)
		if err != nil {
			return false, err
		}
		switch {
		case st.withdraw:
			if hasOld {
				delIndex = append(delIndex, indexKeys(id, old.Keys, nil)...)
				delRecords = append(delRecords, []byte(id))
				im.stats.Removed++
			}
			continue
		case hasOld && old.Hash == st.hash:
			if old.Source != st.source || old.Raw != st.raw || old.Zip != st.zip {
				old.Source, old.Raw, old.Zip = st.source, st.raw, st.zip
				putRecords = append(putRecords, kv{[]byte(id), old.encode()})
			}
			continue
		case hasOld:
			delIndex = append(delIndex, indexKeys(id, old.Keys, st.keys)...)
		}
		for i, k := range st.keys {
			putIndex = append(putIndex, kv{[]byte(k + "\x00" + id), st.values[i]})
		}
		meta := recordMeta{Hash: st.hash, Source: st.source, Keys: st.keys, Raw: st.raw, Zip: st.zip}
		putRecords = append(putRecords, kv{[]byte(id), meta.encode()})
		im.stats.Written++
		changed = true
	}
	if final && len(im.seen) > 0 {
		dels, recs, err := im.unlisted(records)
		if err != nil {
			return false, err
		}
		delIndex, delRecords = append(delIndex, dels...), append(delRecords, recs...)
	}
	if err := deleteSorted(index, delIndex); err != nil {
		return false, err
	}
	if err := deleteSorted(records, delRecords); err != nil {
		return false, err
	}
	if err := putSorted(index, putIndex); err != nil {
		return false, err
	}
	if err := putSorted(records, putRecords); err != nil {
		return false, err
	}
	sigsChanged, err := im.flushSignatures(tx)
	if err != nil {
		return false, err
	}
	im.staged, im.stagedBytes = map[string]*staged{}, 0
	return changed || sigsChanged || len(delRecords) > 0, nil
}

// unlisted finds the stored records that an updated source no longer lists
// (withdrawn by deletion rather than by "withdrawn"): their index keys and
// ids, to delete.
func (im *importer) unlisted(records *bolt.Bucket) (delIndex, delRecords [][]byte, err error) {
	err = records.ForEach(func(id, v []byte) error {
		mv, err := viewRecordMeta(v)
		if err != nil {
			return fmt.Errorf("read stored record %s: %w", id, err)
		}
		listed, updated := im.seen[string(mv.source)]
		if !updated {
			return nil
		}
		if _, ok := listed[string(id)]; ok {
			return nil
		}
		if _, ok := im.staged[string(id)]; ok {
			return nil // now from another source
		}
		m, err := decodeRecordMeta(v)
		if err != nil {
			return fmt.Errorf("read stored record %s: %w", id, err)
		}
		delIndex = append(delIndex, indexKeys(string(id), m.Keys, nil)...)
		delRecords = append(delRecords, bytes.Clone(id))
		im.stats.Removed++
		return nil
	})
	return delIndex, delRecords, err
}

// storedMeta reads the stored metadata of a record, if there is one.
func storedMeta(records *bolt.Bucket, id string) (recordMeta, bool, error) {
	v := records.Get([]byte(id))
	if v == nil {
		return recordMeta{}, false, nil
	}
	m, err := decodeRecordMeta(v)
	if err != nil {
		return m, false, fmt.Errorf("read stored record %s: %w", id, err)
	}
	return m, true, nil
}

// indexKeys gives the index keys of a record's prefixes, leaving out those
// in keep (they are about to be overwritten, not deleted).
func indexKeys(id string, prefixes, keep []string) [][]byte {
	var out [][]byte
	for _, p := range prefixes {
		if !slices.Contains(keep, p) {
			out = append(out, []byte(p+"\x00"+id))
		}
	}
	return out
}

func deleteSorted(b *bolt.Bucket, keys [][]byte) error {
	slices.SortFunc(keys, bytes.Compare)
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return fmt.Errorf("delete %q: %w", k, err)
		}
	}
	return nil
}

func putSorted(b *bolt.Bucket, kvs []kv) error {
	slices.SortFunc(kvs, func(a, b kv) int { return bytes.Compare(a.key, b.key) })
	for _, e := range kvs {
		if err := b.Put(e.key, e.val); err != nil {
			return fmt.Errorf("write %q: %w", strings.ReplaceAll(string(e.key), "\x00", " "), err)
		}
	}
	return nil
}
