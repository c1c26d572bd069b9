package vulndb

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// versionHash is the content part of a version ("sha256:<hash>@<time>").
func versionHash(v string) string { h, _, _ := strings.Cut(v, "@"); return h }

// buildFiles lists the copies left in the database directory.
func buildFiles(t *testing.T, db *DB) []string {
	t.Helper()
	left, err := filepath.Glob(filepath.Join(db.dir, buildPattern))
	if err != nil {
		t.Fatal(err)
	}
	return left
}

// An import larger than the stage budget is built beside the database in
// force and swapped in: the same content, the same version, the same
// matches as one written in place, and no copy left behind.
func TestImportBuiltBesideMatchesInPlace(t *testing.T) {
	src := osvTestdata(t)
	inPlace, beside := openTestDB(t), openTestDB(t)
	beside.stageBudget = 64 << 10 // a batch every few dozen records
	for _, db := range []*DB{inPlace, beside} {
		if _, err := db.Import(context.Background(), []string{src}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := versionHash(inPlace.Version()), versionHash(beside.Version()); a == "" || a != b {
		t.Fatalf("versions differ: in place %s, built beside %s", a, b)
	}
	q := []Query{
		{Ecosystem: "Alpine:v3.16", Name: "busybox", Version: "1.35.0-r17"},
		{Ecosystem: "Debian:12", Name: "openssl", Version: "3.0.9-1"},
		{Ecosystem: "npm", Name: "lodash", Version: "4.17.11"},
	}
	if a, b := ids(match(t, inPlace, q...)), ids(match(t, beside, q...)); len(a) == 0 || !slices.Equal(a, b) {
		t.Errorf("matches differ: in place %v, built beside %v", a, b)
	}
	if left := buildFiles(t, beside); len(left) != 0 {
		t.Errorf("copies left behind: %v", left)
	}
	// Re-importing the same records changes nothing, however they are
	// batched.
	v := beside.Version()
	st, err := beside.Import(context.Background(), []string{src}, nil)
	if err != nil || st.Records == 0 || beside.Version() != v {
		t.Errorf("re-import: %+v, %v, version %s → %s", st, err, v, beside.Version())
	}
}

// An import that fails or is cancelled after it started writing batches
// into the copy leaves the database in force as it was, and the copy gone.
func TestInterruptedImportKeepsDatabaseInForce(t *testing.T) {
	broken := filepath.Join(t.TempDir(), "broken.zip")
	if err := os.WriteFile(broken, []byte("PK\x03\x04 not really a zip"), 0o644); err != nil {
		t.Fatal(err)
	}
	alpine := osvTestdata(t, "alpine")
	busybox := Query{Ecosystem: "Alpine:v3.16", Name: "busybox", Version: "1.35.0-r17"}
	lodash := Query{Ecosystem: "npm", Name: "lodash", Version: "4.17.11"}
	cases := []struct {
		name   string
		run    func(db *DB) error
		reason string
	}{
		{"unreadable archive after the batches", func(db *DB) error {
			_, err := db.Import(context.Background(), []string{alpine, broken}, nil)
			return err
		}, "broken.zip"},
		{"cancelled midway", func(db *DB) error {
			_, err := db.Import(&cancelledAfter{Context: context.Background()}, []string{alpine}, nil)
			return err
		}, "context canceled"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := openTestDB(t)
			if _, err := db.Import(context.Background(), []string{osvTestdata(t, "npm")}, nil); err != nil {
				t.Fatal(err)
			}
			before := db.Version()
			beforeLodash := ids(match(t, db, lodash))
			db.stageBudget = 16 << 10
			err := tc.run(db)
			if err == nil || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("interrupted import: err = %v, want %q", err, tc.reason)
			}
			if db.Version() != before {
				t.Errorf("version changed: %s → %s", before, db.Version())
			}
			if got := ids(match(t, db, busybox)); len(got) != 0 {
				t.Errorf("half an import in force: busybox matches %v", got)
			}
			if got := ids(match(t, db, lodash)); !slices.Equal(got, beforeLodash) {
				t.Errorf("old records: lodash matches %v, want %v", got, beforeLodash)
			}
			if left := buildFiles(t, db); len(left) != 0 {
				t.Errorf("copies left behind: %v", left)
			}
			// The database still takes an import.
			if _, err := db.Import(context.Background(), []string{alpine}, nil); err != nil {
				t.Fatal(err)
			}
			if got := ids(match(t, db, busybox)); !slices.Equal(got, []string{"ALPINE-CVE-2023-42366"}) {
				t.Errorf("after a full import busybox matches %v", got)
			}
		})
	}
}

// cancelledAfter is a context that reports itself cancelled from its n-th
// Err on: the importer asks once per record, so an import is interrupted
// at a known record, well after its first batches were written.
type cancelledAfter struct {
	context.Context
	n atomic.Int64
}

func (c *cancelledAfter) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// A process that died while building leaves its copy; the next Open
// removes it and the database in force is intact.
func TestOpenRemovesDeadBuild(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vulndb")
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	importValues(t, db, rec("GHSA-TEST-0001", "npm", "left-pad", "SEMVER", ev("introduced", "0"), ev("fixed", "1.3.0")))
	v := db.Version()
	db.Close()
	dead := filepath.Join(dir, fileName+".new-12345")
	if err := os.WriteFile(dead, []byte("half a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dead build %s still there: %v", dead, err)
	}
	if db.Version() != v {
		t.Errorf("version %s, want %s", db.Version(), v)
	}
}

// A process waiting for the file while another builds beside and swaps
// opens the new file, not the replaced one.
func TestOpenAfterSwapReadsNewFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "vulndb")
	db, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	db.stageBudget = 1
	importValues(t, db,
		rec("GHSA-TEST-0001", "npm", "left-pad", "SEMVER", ev("introduced", "0"), ev("fixed", "1.3.0")),
		rec("GHSA-TEST-0002", "npm", "right-pad", "SEMVER", ev("introduced", "0"), ev("fixed", "1.3.0")))
	v := db.Version()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.Version() != v || v == "" {
		t.Errorf("reopened version %q, want %q", again.Version(), v)
	}
}

// storedZip builds an archive whose entries are stored uncompressed, so a
// test can damage one entry's bytes and leave the archive's structure
// whole.
func storedZip(t *testing.T, files map[string][]byte) []byte {
	t.Helper()
	return zipWith(t, files, zip.Store)
}

// A downloaded archive that does not verify (one entry's bytes damaged,
// its CRC-32 wrong) is refused whole: the records the source brought
// before all stay, the one in the damaged entry included.
func TestUpdateRefusesCorruptArchive(t *testing.T) {
	files := recordFiles(t, "npm")
	srv := &osvServer{}
	srv.set(storedZip(t, files), `"v1"`)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	src := []Source{{Ecosystem: "npm", URL: ts.URL + "/npm/all.zip"}}
	db := openTestDB(t)
	if _, err := db.Update(context.Background(), src, ts.Client(), nil); err != nil {
		t.Fatal(err)
	}
	v := db.Version()
	lodash := Query{Ecosystem: "npm", Name: "lodash", Version: "4.17.11"}
	before := ids(match(t, db, lodash))
	if !slices.Contains(before, "GHSA-jf85-cpcp-j695") {
		t.Fatalf("lodash 4.17.11 matches %v", before)
	}
	// A new version upstream in which one record's bytes were damaged in
	// transit: same length, wrong checksum.
	files["GHSA-fvqr-27wr-82fm.json"] = append(files["GHSA-fvqr-27wr-82fm.json"], '\n')
	archive := storedZip(t, files)
	target := []byte(`"id": "GHSA-jf85-cpcp-j695"`)
	at := bytes.Index(archive, target)
	if at < 0 {
		t.Fatal("record not found in the stored archive")
	}
	archive[at+len(`"id": "GHSA-jf85-cpcp-j69`)] = '6'
	srv.set(archive, `"v2"`)

	st, err := db.Update(context.Background(), src, ts.Client(), nil)
	if err == nil || !strings.Contains(err.Error(), "GHSA-jf85-cpcp-j695.json") || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("update with a corrupt archive: err = %v, stats %+v", err, st)
	}
	if st.Removed != 0 || db.Version() != v {
		t.Errorf("corrupt archive changed the database: %+v, version %s → %s", st, v, db.Version())
	}
	if got := ids(match(t, db, lodash)); !slices.Equal(got, before) {
		t.Errorf("after the refused archive lodash matches %v, want %v", got, before)
	}
	status, _ := db.Status()
	if s := status.Sources[0]; s.ETag != `"v1"` || !strings.Contains(s.Error, "checksum") {
		t.Errorf("source status after the refused archive: %+v", s)
	}
}

// A 304 leaves that ecosystem's records, ETag and change time as they were
// while another ecosystem's change is imported; the archive of the
// unchanged one is not downloaded again.
func TestUpdateNotModifiedLeavesEcosystemUntouched(t *testing.T) {
	npm, pypi := &osvServer{}, &osvServer{}
	npm.set(zipOf(t, recordFiles(t, "npm")), `"npm-1"`)
	pyFiles := recordFiles(t, "pypi")
	pypi.set(zipOf(t, pyFiles), `"pypi-1"`)
	tn, tp := httptest.NewServer(npm), httptest.NewServer(pypi)
	defer tn.Close()
	defer tp.Close()
	sources := []Source{{Ecosystem: "npm", URL: tn.URL + "/npm/all.zip"}, {Ecosystem: "PyPI", URL: tp.URL + "/PyPI/all.zip"}}
	db := openTestDB(t)
	if _, err := db.Update(context.Background(), sources, nil, nil); err != nil {
		t.Fatal(err)
	}
	lodash := Query{Ecosystem: "npm", Name: "lodash", Version: "4.17.11"}
	npmBefore := ids(match(t, db, lodash))
	status, _ := db.Status()
	npmStatus := sourceStatus(status, "npm")
	if npmStatus.Ecosystem != "npm" || len(npmBefore) == 0 {
		t.Fatalf("after the first update: %+v, lodash %v", status.Sources, npmBefore)
	}
	var dropped string
	for name := range pyFiles {
		dropped = name
		break
	}
	delete(pyFiles, dropped)
	pypi.set(zipOf(t, pyFiles), `"pypi-2"`)
	st, err := db.Update(context.Background(), sources, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Unchanged != 1 || st.Removed != 1 || npm.lastSeen() != `"npm-1"|` {
		t.Errorf("second update: %+v, npm request %q", st, npm.lastSeen())
	}
	if got := ids(match(t, db, lodash)); !slices.Equal(got, npmBefore) {
		t.Errorf("npm after its 304: lodash matches %v, want %v", got, npmBefore)
	}
	status, _ = db.Status()
	after := sourceStatus(status, "npm")
	if after.ETag != npmStatus.ETag || !after.ChangedAt.Equal(npmStatus.ChangedAt) || after.Records != npmStatus.Records || !after.CheckedAt.After(npmStatus.CheckedAt) {
		t.Errorf("npm source after its 304: %+v, before %+v", after, npmStatus)
	}
	if status.Ecosystems["npm"] != 8 {
		t.Errorf("npm records after its 304: %d", status.Ecosystems["npm"])
	}
}

func sourceStatus(st Status, eco string) SourceStatus {
	for _, s := range st.Sources {
		if s.Ecosystem == eco {
			return s
		}
	}
	return SourceStatus{}
}

func recordFiles(t *testing.T, sub string) map[string][]byte {
	t.Helper()
	dir := osvTestdata(t, sub)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

// Update downloads several archives at once, never more than fetchLimit.
func TestUpdateConcurrencyIsBounded(t *testing.T) {
	const limit, sources = 3, 8
	body := zipOf(t, recordFiles(t, "npm"))
	var mu sync.Mutex
	inFlight, most, served := 0, 0, 0
	arrived := sync.NewCond(&mu)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		arrived.Broadcast()
		// Hold each request until limit are in flight (or the rest
		// can never come, or 5 s went by), so that an unbounded
		// Update would show more than limit at once.
		deadline := time.Now().Add(5 * time.Second)
		for inFlight < limit && sources-served > inFlight-1 && time.Now().Before(deadline) {
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
		}
		mu.Unlock()
		time.Sleep(20 * time.Millisecond) // let an unbounded client pile up more
		w.Write(body)
		mu.Lock()
		inFlight--
		served++
		mu.Unlock()
	}))
	defer srv.Close()
	var src []Source
	for i := range sources {
		src = append(src, Source{Ecosystem: "npm", URL: fmt.Sprintf("%s/mirror-%d/npm/all.zip", srv.URL, i)})
	}
	db := openTestDB(t)
	db.fetchLimit = limit
	st, err := db.Update(context.Background(), src, srv.Client(), nil)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if most > limit || most < 2 {
		t.Errorf("at most %d downloads at once, want 2..%d", most, limit)
	}
	if served != sources || st.Records != 8*sources {
		t.Errorf("served %d archives, imported %+v", served, st)
	}
}

// An update reads every archive that changed but writes only the records
// whose content changed; a record that arrives byte for byte as stored is
// not even parsed again. Metadata from before the raw hash still decodes.
func TestUpdateWritesOnlyChangedRecords(t *testing.T) {
	files := recordFiles(t, "npm")
	srv := &osvServer{}
	srv.set(zipOf(t, files), `"v1"`)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	src := []Source{{Ecosystem: "npm", URL: ts.URL + "/npm/all.zip"}}
	db := openTestDB(t)
	st, err := db.Update(context.Background(), src, ts.Client(), nil)
	if err != nil || st.Written != 8 {
		t.Fatalf("first update: %+v, %v", st, err)
	}
	v := db.Version()
	live := filepath.Join(db.dir, fileName)
	before, err := os.Stat(live)
	if err != nil {
		t.Fatal(err)
	}
	// Every staged record would now be written beside and swapped in: a
	// file left in place shows nothing was staged.
	db.stageBudget = 1
	srv.set(zipOf(t, files), `"v2"`) // a new ETag, the same records
	st, err = db.Update(context.Background(), src, ts.Client(), nil)
	if err != nil || st.Records != 8 || st.Written != 0 || st.Removed != 0 || db.Version() != v {
		t.Fatalf("same records again: %+v, %v, version %s → %s", st, err, v, db.Version())
	}
	if after, err := os.Stat(live); err != nil || !os.SameFile(before, after) {
		t.Errorf("same records again rewrote the database file: %v", err)
	}
	files["GHSA-4xc9-xhrj-v574.json"] = bytes.Replace(files["GHSA-4xc9-xhrj-v574.json"], []byte(`"fixed": "4.17.11"`), []byte(`"fixed": "4.17.12"`), 1)
	srv.set(zipOf(t, files), `"v3"`)
	st, err = db.Update(context.Background(), src, ts.Client(), nil)
	if err != nil || st.Records != 8 || st.Written != 1 || db.Version() == v {
		t.Fatalf("one record changed: %+v, %v", st, err)
	}
	if got := ids(match(t, db, Query{Ecosystem: "npm", Name: "lodash", Version: "4.17.11"})); !slices.Contains(got, "GHSA-4xc9-xhrj-v574") {
		t.Errorf("changed record not in force: lodash 4.17.11 matches %v", got)
	}
	// The same bytes imported from disk move the records to the import
	// (source ""): a later update of the source no longer removes them.
	dir := t.TempDir()
	for name, data := range files {
		os.WriteFile(filepath.Join(dir, name), data, 0o644)
	}
	st, err = db.Import(context.Background(), []string{dir}, nil)
	if err != nil || st.Written != 0 || st.Records != 8 {
		t.Fatalf("import of the same records: %+v, %v", st, err)
	}
	srv.set(zipOf(t, map[string][]byte{}), `"v4"`)
	if st, err = db.Update(context.Background(), src, ts.Client(), nil); err != nil || st.Removed != 0 {
		t.Fatalf("empty source after the import: %+v, %v", st, err)
	}

	old := recordMeta{Hash: [32]byte{1}, Source: "u", Keys: []string{"npm\x00a"}}
	enc := old.encode()
	legacy := enc[:len(enc)-32] // as written before the raw hash
	for _, b := range [][]byte{enc, legacy} {
		m, err := decodeRecordMeta(b)
		if err != nil || m.Hash != old.Hash || m.Source != "u" || !slices.Equal(m.Keys, old.Keys) || m.Raw != ([32]byte{}) {
			t.Errorf("decode %x: %+v, %v", b, m, err)
		}
	}
	if _, err := decodeRecordMeta(append(legacy, 1, 2)); err == nil {
		t.Error("metadata with trailing bytes decoded")
	}
}

// readAhead answers every read as the file itself would, whatever the
// order, size and position of the reads.
func TestReadAheadMatchesFile(t *testing.T) {
	data := make([]byte, 3*readAheadSize+12345)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ra := &readAhead{r: f, buf: make([]byte, 0, readAheadSize)}
	end := int64(len(data))
	cases := []struct {
		off int64
		n   int
	}{
		{0, 10}, {5, 100}, {readAheadSize - 5, 10}, {readAheadSize - 5, 10}, {2, 3},
		{end - 10, 10}, {end - 10, 20}, {end, 1}, {end + 5, 1}, {100, 2 * readAheadSize}, {0, 0},
		{readAheadSize, readAheadSize}, {3 * readAheadSize, 12345},
	}
	for _, tc := range cases {
		want := make([]byte, tc.n)
		wn, werr := f.ReadAt(want, tc.off)
		got := make([]byte, tc.n)
		gn, gerr := ra.ReadAt(got, tc.off)
		if gn != wn || !bytes.Equal(got[:gn], want[:wn]) || (gerr == nil) != (werr == nil) {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v; file: %d, %v", tc.n, tc.off, gn, gerr, wn, werr)
		}
	}
}
