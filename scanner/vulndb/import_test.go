package vulndb

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestImportTestdata imports the whole shared tree, as `portcullis db
// import` would, and checks what arrived.
func TestImportTestdata(t *testing.T) {
	db := openTestDB(t)
	start := time.Now()
	var progress bytes.Buffer
	st, err := db.Import(context.Background(), []string{osvTestdata(t)}, &progress)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if fi, err := os.Stat(filepath.Join(db.dir, fileName)); err == nil {
		t.Logf("imported %d records in %v; database file %.1f MB", st.Records, took, float64(fi.Size())/1e6)
	}
	// As ../shared/testdata/README.md lists them: the malicious-package
	// records (MAL-*) count under their ecosystems, npm 4 and PyPI 2.
	wantEcos := map[string]int{"Alpine:v3.16": 5228, "Alpine:v3.10": 2307, "Debian:12": 549, "PyPI": 35 + 2, "npm": 8 + 4,
		"Maven": 7, "RubyGems": 7, "Packagist": 5, "NuGet": 2, "crates.io": 4}
	const wantRecords = 5360 + 549 + 35 + 8 + 7 + 7 + 5 + 2 + 4 + 6
	if st.Records != wantRecords || st.Skipped != 0 || !maps.Equal(st.Ecosystems, wantEcos) {
		t.Errorf("Import = %+v, want %d records, 0 skipped, %v", st, wantRecords, wantEcos)
	}
	if !strings.HasSuffix(progress.String(), fmt.Sprintf("imported %d records, skipped 0\n", wantRecords)) {
		t.Errorf("progress output ends %q", progress.String()[max(0, progress.Len()-80):])
	}
	status, err := db.Status()
	if err != nil {
		t.Fatal(err)
	}
	if status.Records != wantRecords || !maps.Equal(status.Ecosystems, wantEcos) || !strings.HasPrefix(status.Version, "sha256:") {
		t.Errorf("Status = %+v", status)
	}
}

// TestImportZip imports an archive laid out like osv.dev's all.zip, built
// here from real records.
func TestImportZip(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	src := osvTestdata(t, "npm")
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		w, err := zw.Create(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "all.zip")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	db := openTestDB(t)
	st, err := db.Import(context.Background(), []string{p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != 8 || st.Skipped != 0 || st.Ecosystems["npm"] != 8 {
		t.Errorf("Import(zip) = %+v, want 8 npm records", st)
	}
	if got := ids(match(t, db, Query{Ecosystem: "npm", Name: "minimist", Version: "1.2.5"})); !slices.Equal(got, []string{"GHSA-xvch-5gv4-984h"}) {
		t.Errorf("minimist 1.2.5 from the zip: %v", got)
	}
}

// TestImportBadInput: a JSON array file with good and bad records, a
// malformed file, a record with a bad range; each bad record is skipped and
// named, the rest imported. A missing path fails before anything is stored.
func TestImportBadInput(t *testing.T) {
	dir := t.TempDir()
	good := rec("GOOD-1", "npm", "left-pad", "SEMVER", ev("introduced", "0"), ev("fixed", "1.3.0"))
	noIntro := rec("BAD-NOINTRO", "npm", "x", "SEMVER", ev("fixed", "1.0.0"))
	twoKinds := rec("BAD-TWO", "npm", "x", "SEMVER", map[string]string{"introduced": "0", "fixed": "1.0.0"})
	badVersion := rec("BAD-VERSION", "Alpine:v3.16", "x", "ECOSYSTEM", ev("introduced", "0"), ev("fixed", "not a version!"))
	noEvents := rec("BAD-EMPTY", "PyPI", "x", "ECOSYSTEM")
	noID := rec("", "npm", "x", "SEMVER", ev("introduced", "0"))
	writeJSON(t, dir, "array.json", []any{good, noIntro, twoKinds, badVersion, noEvents, noID})
	if err := os.WriteFile(filepath.Join(dir, "broken.json"), []byte(`{"id": "BROKEN", "affected": [`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "empty.json"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not read: not .json"), 0o644); err != nil {
		t.Fatal(err)
	}

	db := openTestDB(t)
	st, err := db.Import(context.Background(), []string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != 1 || st.Skipped != 7 || len(st.Problems) != 7 {
		t.Fatalf("Import = %+v, want 1 record and 7 skipped", st)
	}
	problems := strings.Join(st.Problems, "\n")
	for _, want := range []string{
		"array.json[1]: record BAD-NOINTRO, affected[0] (npm x): ranges[0] (SEMVER): range has no introduced event",
		"array.json[2]: record BAD-TWO",
		`array.json[3]: record BAD-VERSION, affected[0] (Alpine:v3.16 x): ranges[0] (ECOSYSTEM): fixed version "not a version!"`,
		"array.json[4]: record BAD-EMPTY",
		"array.json[5]: id is missing",
		"broken.json: invalid OSV JSON",
		"empty.json: empty file",
	} {
		if !strings.Contains(problems, want) {
			t.Errorf("problems lack %q:\n%s", want, problems)
		}
	}

	before := db.Version()
	_, err = db.Import(context.Background(), []string{dir, filepath.Join(dir, "missing.json")}, nil)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("Import(missing path) = %v, want a not-exist error naming the file", err)
	}
	if db.Version() != before {
		t.Error("a failed import changed the database version")
	}

	notZip := filepath.Join(dir, "fake.zip")
	if err := os.WriteFile(notZip, []byte("PK\x03\x04 but then nothing"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Import(context.Background(), []string{notZip}, nil); err == nil || !strings.Contains(err.Error(), "fake.zip") {
		t.Errorf("Import(broken zip) = %v, want an error naming the file", err)
	}
}

// TestImportCancelled: a cancelled import leaves nothing behind.
func TestImportCancelled(t *testing.T) {
	db := openTestDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.Import(ctx, []string{osvTestdata(t, "npm")}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Import(cancelled) = %v", err)
	}
	if st, _ := db.Status(); st.Records != 0 || st.Version != "" {
		t.Errorf("after a cancelled import: %+v", st)
	}
}

// TestVersionChanges: Version moves when matching could change, and only
// then; a replaced record leaves no stale index entries.
func TestVersionChanges(t *testing.T) {
	db := openTestDB(t)
	if v := db.Version(); v != "" {
		t.Errorf("empty database has version %q", v)
	}
	npm := osvTestdata(t, "npm")
	if _, err := db.Import(context.Background(), []string{npm}, nil); err != nil {
		t.Fatal(err)
	}
	v1 := db.Version()
	if !strings.HasPrefix(v1, "sha256:") || !strings.Contains(v1, "@") {
		t.Fatalf("Version = %q", v1)
	}
	time.Sleep(1100 * time.Millisecond) // build times have one-second resolution
	if _, err := db.Import(context.Background(), []string{npm}, nil); err != nil {
		t.Fatal(err)
	}
	if v := db.Version(); v != v1 {
		t.Errorf("re-import of identical data: version %q → %q", v1, v)
	}
	changed := rec("GHSA-fvqr-27wr-82fm", "npm", "lodash", "ECOSYSTEM", ev("introduced", "0"), ev("fixed", "4.17.6"))
	importValues(t, db, changed)
	v2 := db.Version()
	if v2 == v1 {
		t.Error("a changed record did not change the version")
	}
	fs := match(t, db, Query{Ecosystem: "npm", Name: "lodash", Version: "4.17.5"})
	if !slices.Contains(ids(fs), "GHSA-fvqr-27wr-82fm") {
		t.Errorf("replaced record not matched: %v", ids(fs))
	}
	// The replacement names lodash only; the stored index must agree.
	st, _ := db.Status()
	if st.Records != 8 || st.Ecosystems["npm"] != 8 {
		t.Errorf("Status after replacing a record = %+v", st)
	}
	withdrawn := map[string]any{"id": "GHSA-fvqr-27wr-82fm", "withdrawn": "2024-01-01T00:00:00Z"}
	if s := importValues(t, db, withdrawn); s.Removed != 1 {
		t.Errorf("withdrawn record: %+v", s)
	}
	if fs := match(t, db, Query{Ecosystem: "npm", Name: "lodash", Version: "4.17.5"}); slices.Contains(ids(fs), "GHSA-fvqr-27wr-82fm") {
		t.Error("withdrawn record still matches")
	}
	if st, _ := db.Status(); st.Records != 7 || db.Version() == v2 {
		t.Errorf("after withdrawal: %+v", st)
	}
}

// TestOpenForeign: Open refuses files that are not its database, clearly.
func TestOpenForeign(t *testing.T) {
	for name, content := range map[string][]byte{
		"garbage": bytes.Repeat([]byte("not a database "), 2000),
		"short":   []byte("hello"),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, fileName), content, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := Open(dir)
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded on a foreign file")
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, fileName)) {
				t.Errorf("error does not name the file: %v", err)
			}
			t.Log(err)
		})
	}
	t.Run("other bbolt file", func(t *testing.T) {
		dir := t.TempDir()
		db, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		// Turn it into some other program's bbolt file.
		db.bolt.Update(func(tx *bolt.Tx) error {
			for _, b := range []string{bucketMeta, bucketRecords, bucketIndex} {
				tx.DeleteBucket([]byte(b))
			}
			_, err := tx.CreateBucket([]byte("blobs"))
			return err
		})
		db.Close()
		_, err = Open(dir)
		if err == nil || !strings.Contains(err.Error(), "not a portcullis vulnerability database") {
			t.Errorf("Open(other bbolt file) = %v", err)
		}
	})
	t.Run("directory is a file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "vulndb")
		os.WriteFile(p, nil, 0o644)
		if _, err := Open(p); err == nil {
			t.Error("Open(file as directory) succeeded")
		}
	})
}

// BenchmarkImportTestdata: the whole shared tree into a fresh database.
func BenchmarkImportTestdata(b *testing.B) {
	src := osvTestdata(b)
	for b.Loop() {
		db, err := Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := db.Import(context.Background(), []string{src}, nil); err != nil {
			b.Fatal(err)
		}
		db.Close()
	}
}

// TestMatchDuringImport: a Match running while an import commits sees the
// database before or after it, never in between.
func TestMatchDuringImport(t *testing.T) {
	db := openTestDB(t)
	alpine := osvTestdata(t, "alpine")
	done := make(chan error, 1)
	go func() {
		_, err := db.Import(context.Background(), []string{alpine}, nil)
		done <- err
	}()
	q := Query{Ecosystem: "Alpine:v3.16", Name: "busybox", Version: "1.35.0-r17"}
	for finished := false; !finished; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished = true
		case <-time.After(time.Millisecond):
		}
		// Match first: once it has seen the import, Status must too.
		fs := match(t, db, q)
		st, err := db.Status()
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) > 0 && st.Records != 5360 || len(fs) > 1 {
			t.Fatalf("mid-import view: %d records, %v", st.Records, ids(fs))
		}
	}
	if fs := match(t, db, q); !slices.Equal(ids(fs), []string{"ALPINE-CVE-2023-42366"}) {
		t.Errorf("after import: %v", ids(fs))
	}
}
