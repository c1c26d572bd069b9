package vex

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	v020, err := os.ReadFile("testdata/v020.json")
	if err != nil {
		t.Fatal(err)
	}
	legacy, err := os.ReadFile("testdata/legacy.json")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("one.json", v020)
	write("more/a/legacy.json", legacy)
	write("more/readme.txt", []byte("not a document"))

	l, err := LoadFiles(dir, []string{"one.json", filepath.Join(dir, "more")}, "policy:")
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Sources) != 2 || l.Sources[0].Origin != "policy:one.json" || l.Sources[1].Doc.ID != "https://example.com/vex/legacy-1" {
		t.Fatalf("sources %+v", l.Sources)
	}
	again, err := LoadFiles(dir, []string{"one.json", "more"}, "policy:")
	if err != nil || again.Hash != l.Hash {
		t.Fatalf("same files: hash %s, then %s (%v)", l.Hash, again.Hash, err)
	}
	write("more/a/legacy.json", []byte(strings.Replace(string(legacy), "never called", "never, ever called", 1)))
	changed, err := LoadFiles(dir, []string{"one.json", "more"}, "policy:")
	if err != nil || changed.Hash == l.Hash {
		t.Fatalf("changed document: hash %s unchanged (%v)", changed.Hash, err)
	}

	for _, tc := range []struct {
		name  string
		paths []string
		want  string
	}{
		{"missing file", []string{"nope.json"}, "nope.json"},
		{"invalid document", []string{"bad"}, "bad.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write("bad/bad.json", []byte(`{"@context":"https://openvex.dev/ns","statements":[{"status":"x"}]}`))
			if _, err := LoadFiles(dir, tc.paths, "policy:"); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to name %s", err, tc.want)
			}
		})
	}
}

func TestLoadFilesBounded(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, make([]byte, MaxDocumentBytes+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFiles(dir, []string{"big.json"}, ""); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Fatalf("err %v", err)
	}
	many := filepath.Join(dir, "many")
	if err := os.Mkdir(many, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range MaxFiles + 1 {
		if err := os.WriteFile(filepath.Join(many, strings.Repeat("a", 1+i/100)+string(rune('a'+i%26))+string(rune('a'+i/26%26))+".json"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := LoadFiles(dir, []string{"many"}, ""); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("err %v", err)
	}
}
