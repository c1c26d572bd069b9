package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadSessionKey(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name, content string
		want          string // the key, or a substring of the error
		ok            bool
	}{
		{"base64 with a newline", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", true},
		{"too short", "secret\n", "6 bytes, want at least 32", false},
		{"only white space", "   \n\n", "0 bytes", false},
		{"too large", strings.Repeat("k", 5000), "larger than 4096 bytes", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
			if err := os.WriteFile(p, []byte(c.content), 0o600); err != nil {
				t.Fatal(err)
			}
			key, err := readSessionKey(p)
			switch {
			case c.ok && (err != nil || string(key) != c.want):
				t.Fatalf("key %q, %v; want %q", key, err, c.want)
			case !c.ok && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("error %v, want one with %q", err, c.want)
			}
		})
	}
	if _, err := readSessionKey(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "ui.session_key_file") {
		t.Fatalf("missing file: %v", err)
	}
}
