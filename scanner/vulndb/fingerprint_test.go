package vulndb

import (
	"archive/zip"
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// An entry whose fingerprint is the one stored for its record takes the
// stored content hash and is not read through; any other entry is hashed
// from its content; and only a fingerprint that is exactly the stored one
// counts.
func TestVerifyArchiveSkipsKnownEntries(t *testing.T) {
	files := recordFiles(t, "npm")
	path := filepath.Join(t.TempDir(), "all.zip")
	if err := os.WriteFile(path, zipOf(t, files), 0o600); err != nil {
		t.Fatal(err)
	}
	sums, fps, err := verifyArchive(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	stored := [32]byte{1, 2, 3} // not the content's hash: shows it was taken, not computed
	known, other := recordIDHint(zr.File[0].Name), recordIDHint(zr.File[1].Name)
	again, _, err := verifyArchive(path, func(id string) (raw, zip [32]byte) {
		switch id {
		case known:
			return stored, fps[0]
		case other:
			zip = fps[1]
			zip[0] ^= 1
			return stored, zip
		}
		return raw, zip
	})
	if err != nil {
		t.Fatal(err)
	}
	if again[0] != stored {
		t.Errorf("entry with the stored fingerprint: hash %x, want the stored %x", again[0], stored)
	}
	if again[1] != sums[1] {
		t.Errorf("entry with another fingerprint: hash %x, want its content's %x", again[1], sums[1])
	}
	for i := 2; i < len(sums); i++ {
		if again[i] != sums[i] || fps[i] == ([32]byte{}) {
			t.Errorf("entry %d: hash %x, want %x; fingerprint %x", i, again[i], sums[i], fps[i])
		}
	}
}

// A download whose entry was damaged in transit is refused whole even when
// the record it carries is stored already: damaged bytes never have the
// stored fingerprint, so they are read through and their CRC-32 fails.
func TestUpdateRefusesDamagedKnownEntry(t *testing.T) {
	files := recordFiles(t, "npm")
	body := zipOf(t, files)
	srv := &osvServer{}
	srv.set(body, `"v1"`)
	ts := httptest.NewServer(srv)
	defer ts.Close()
	src := []Source{{Ecosystem: "npm", URL: ts.URL + "/npm/all.zip"}}
	db := openTestDB(t)
	ctx := context.Background()
	if _, err := db.Update(ctx, src, ts.Client(), nil); err != nil {
		t.Fatal(err)
	}
	v1 := db.Version()

	zr, err := zip.NewReader(bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	off, err := zr.File[0].DataOffset()
	if err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Clone(body)
	damaged[off+int64(zr.File[0].CompressedSize64)/2] ^= 0x55
	srv.set(damaged, `"v2"`)
	st, err := db.Update(ctx, src, ts.Client(), nil)
	if err == nil {
		t.Fatalf("damaged download imported: %+v", st)
	}
	if db.Version() != v1 {
		t.Errorf("version moved from %s to %s", v1, db.Version())
	}
	status, _ := db.Status()
	if status.Records != 8 || status.Sources[0].ETag != `"v1"` || status.Sources[0].Error == "" {
		t.Errorf("status after the refused download: %+v", status)
	}
}
