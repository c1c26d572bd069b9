package osvgen

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

const testdata = "../../../../shared/testdata/osv"

// Generated archives import as the real ones do: every record, under its
// ecosystem, copies under new names that match like their originals; a
// revision changes the database version.
func TestWriteImportsAndMatches(t *testing.T) {
	tmpl, err := LoadTemplates(filepath.Join(testdata, "alpine"), filepath.Join(testdata, "npm"), filepath.Join(testdata, "debian"))
	if err != nil {
		t.Fatal(err)
	}
	shares := []Share{
		{"Alpine:v3.16", "Alpine", "Alpine", len(tmpl["Alpine"]) + 50},
		{"npm", "npm", "npm", 3 * len(tmpl["npm"])},
		{"Ubuntu:22.04", "Ubuntu", "Debian", 100},
	}
	if err := Check(shares, tmpl); err != nil {
		t.Fatal(err)
	}
	if err := Check([]Share{{"Go", "Go", "Go", 1}}, tmpl); err == nil {
		t.Error("Check passed a share without real records")
	}
	out := t.TempDir()
	paths, err := Write(out, shares, tmpl, Options{})
	if err != nil {
		t.Fatal(err)
	}
	db, err := vulndb.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := db.Import(context.Background(), paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records != Total(shares) || st.Skipped != 0 {
		t.Fatalf("imported %+v, want %d records", st, Total(shares))
	}
	// lodash's records, and their second copy under lodash-k1.
	for _, name := range []string{"lodash", "lodash-k1", "lodash-k2"} {
		fs, err := db.Match(context.Background(), []vulndb.Query{{Ecosystem: "npm", Name: name, Version: "4.17.11"}})
		if err != nil || len(fs) == 0 {
			t.Errorf("%s 4.17.11: %d findings, %v", name, len(fs), err)
		}
	}
	v := db.Version()
	paths, err = Write(out, shares, tmpl, Options{Revision: 1, RevisePer: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Import(context.Background(), paths, nil); err != nil {
		t.Fatal(err)
	}
	if db.Version() == v {
		t.Error("a revision did not change the database version")
	}
}
