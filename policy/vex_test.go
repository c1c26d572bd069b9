package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const vexDoc = `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"doc-1","statements":[
 {"vulnerability":{"name":"CVE-2023-0001"},"products":[{"@id":"sha256:1111111111111111111111111111111111111111111111111111111111111111"}],"status":"fixed"}]}`

func TestParseVEX(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		files      []string
		err        string
	}{
		{name: "files", yaml: "vex:\n  files: [a.json, /etc/vex]\nrules: []\n", files: []string{"a.json", "/etc/vex"}},
		{name: "unknown key", yaml: "vex:\n  file: [a.json]\nrules: []\n", err: `line 2: vex: unknown key "file"`},
		{name: "not a list", yaml: "vex:\n  files: a.json\nrules: []\n", err: "vex.files: want a list of strings"},
		{name: "empty path", yaml: "vex:\n  files: ['']\nrules: []\n", err: "vex.files[0]: empty path"},
		{name: "not a mapping", yaml: "vex: [a.json]\nrules: []\n", err: "vex: want a mapping"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse([]byte(tc.yaml))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.VEX == nil || strings.Join(p.VEX.Files, ",") != strings.Join(tc.files, ",") {
				t.Fatalf("vex %+v", p.VEX)
			}
		})
	}
}

// The policy version covers the VEX documents' content: a changed
// document re-decides stored verdicts like any policy change.
func TestLoadVEXVersion(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "supplier.json"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	load := func() *Policy {
		t.Helper()
		p := mustParse(t, "vex:\n  files: [supplier.json]\nrules: []\n")
		if err := p.LoadVEX(dir); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write(vexDoc)
	first := load()
	if len(first.VEXSources()) != 1 || first.VEXSources()[0].Doc.ID != "doc-1" {
		t.Fatalf("sources %+v", first.VEXSources())
	}
	if without := mustParse(t, "rules: []\n"); without.Version() == first.Version() {
		t.Error("a policy with VEX has the version of one without")
	}
	if again := load(); again.Version() != first.Version() {
		t.Errorf("same documents, versions %s and %s", first.Version(), again.Version())
	}
	write(strings.Replace(vexDoc, "CVE-2023-0001", "CVE-2023-0002", 1))
	if changed := load(); changed.Version() == first.Version() {
		t.Error("a changed VEX document left the policy version as it was")
	}
	write(`{"@context":"https://openvex.dev/ns","statements":[{}]}`)
	p := mustParse(t, "vex:\n  files: [supplier.json]\nrules: []\n")
	if err := p.LoadVEX(dir); err == nil || !strings.Contains(err.Error(), "supplier.json") {
		t.Fatalf("invalid document: %v", err)
	}
}
