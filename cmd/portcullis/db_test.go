package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

// 'db status' answers about the database there is; where there is none (or
// an empty one) it says so, fails, and creates nothing.
func TestDBStatusWithoutDatabase(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, data string)
		want    string
	}{
		{"no data directory", func(*testing.T, string) {}, "no vulnerability database in"},
		{"empty data directory", func(t *testing.T, data string) {
			if err := os.MkdirAll(data, 0o755); err != nil {
				t.Fatal(err)
			}
		}, "no vulnerability database in"},
		{"vulndb directory without a database file", func(t *testing.T, data string) {
			if err := os.MkdirAll(filepath.Join(data, "vulndb"), 0o755); err != nil {
				t.Fatal(err)
			}
		}, "no vulnerability database in"},
		{"database nothing was imported into", func(t *testing.T, data string) {
			db, err := vulndb.Open(filepath.Join(data, "vulndb"))
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
		}, "is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			tc.prepare(t, data)
			before := listTree(t, data)
			var stdout, stderr bytes.Buffer
			err := dbCommand(t.Context(), []string{"status", "--data", data}, &stdout, &stderr)
			if err == nil {
				t.Fatalf("db status succeeded: %s", stdout.String())
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "db import") {
				t.Errorf("error %q does not say %q and name 'db import'", err, tc.want)
			}
			if after := listTree(t, data); after != before {
				t.Errorf("db status changed the data directory:\nbefore: %s\nafter:  %s", before, after)
			}
		})
	}
}

// listTree names every path under root ("" when root does not exist).
func listTree(t *testing.T, root string) string {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(root, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, path)
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(paths, " ")
}
