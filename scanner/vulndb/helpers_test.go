package vulndb

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// testdataOSV is the shared, read-only tree of real OSV records.
const testdataOSV = "../../../shared/testdata/osv"

// osvTestdata returns the path of the shared OSV records, failing the test
// when they are not there (a checkout without ../shared).
func osvTestdata(t testing.TB, sub ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{testdataOSV}, sub...)...)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shared OSV test data not found (CI lays shared/ beside the clone): %v", err)
	}
	return p
}

func openTestDB(t testing.TB) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "vulndb"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// writeJSON writes v as JSON into dir/name and returns the path.
func writeJSON(t testing.TB, dir, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// importValues imports records given as Go values, written as one JSON
// array file.
func importValues(t testing.TB, db *DB, records ...any) ImportStats {
	t.Helper()
	p := writeJSON(t, t.TempDir(), "records.json", records)
	st, err := db.Import(context.Background(), []string{p}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// rec builds a minimal OSV record affecting one package with one range.
func rec(id, eco, name, typ string, events ...map[string]string) map[string]any {
	return map[string]any{
		"id": id,
		"affected": []any{map[string]any{
			"package": map[string]string{"ecosystem": eco, "name": name},
			"ranges":  []any{map[string]any{"type": typ, "events": events}},
		}},
	}
}

func ev(kind, v string) map[string]string { return map[string]string{kind: v} }

func match(t testing.TB, db *DB, qs ...Query) []Finding {
	t.Helper()
	fs, err := db.Match(context.Background(), qs)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func ids(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}
