package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/test/clamdserver"
)

// 'db import' takes ClamAV hash signature files, and refuses a malformed
// one whole, naming the file and line.
func TestDBImportSignatures(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	dir := t.TempDir()
	hsb, hdb := clamdserver.EICARHashLines()
	for name, content := range map[string]string{"test.hsb": hsb, "test.hdb": hdb} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr bytes.Buffer
	if err := dbCommand(t.Context(), []string{"import", "--data", data, dir}, &stdout, &stderr); err != nil {
		t.Fatalf("import: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "imported 2 hash signatures") {
		t.Fatalf("import said %q", stdout.String())
	}
	stdout.Reset()
	if err := dbCommand(t.Context(), []string{"status", "--data", data}, &stdout, &stderr); err != nil {
		t.Fatalf("status of a database holding only signatures: %v", err)
	}
	if !strings.Contains(stdout.String(), "hash signatures: 2") {
		t.Fatalf("status said %q", stdout.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.hsb")
	if err := os.WriteFile(bad, []byte(hsb+"nonsense\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := dbCommand(t.Context(), []string{"import", "--data", data, bad}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("malformed file: %v", err)
	}
}
