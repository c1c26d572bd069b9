package containerimage

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/harness"
)

func TestIgnoredBy(t *testing.T) {
	patterns := []string{".git", "portcullis-data/", "/portcullis", "*.test", "**/testdata/fuzz/", "deploy/", "!deploy/keep"}
	for _, tc := range []struct {
		rel, want string
	}{
		{".git", ".git"},
		{".git/objects/ab/cdef", ".git"},
		{"portcullis-data/state.db", "portcullis-data"},
		{"portcullis", "portcullis"},
		{"cmd/portcullis/main.go", ""},
		{"proxy/proxy.test", ""}, // *.test matches the context root only, as in Docker
		{"x.test", "*.test"},
		{"scanner/testdata/fuzz/FuzzX/1", "**/testdata/fuzz"},
		{"deploy/kubernetes/base/kustomization.yaml", "deploy"},
		{"deploy/keep", ""},
		{"go.mod", ""},
	} {
		if got := ignoredBy(patterns, tc.rel); got != tc.want {
			t.Errorf("ignoredBy(%q) = %q, want %q", tc.rel, got, tc.want)
		}
	}
}

// TestDockerignore checks the build context: no repository metadata or
// local data goes in, and every file the image's `go build` needs does.
func TestDockerignore(t *testing.T) {
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	patterns := readIgnore(string(b))
	for _, rel := range []string{".git", ".git/config", "portcullis-data/state.db", "portcullis"} {
		if ignoredBy(patterns, rel) == "" {
			t.Errorf(".dockerignore lets %s into the build context", rel)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "list", "-deps", "-f", "{{if not .Standard}}{{.Dir}}{{end}}", "./cmd/portcullis")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	needed := []string{"go.mod", "go.sum"}
	for _, dir := range strings.Fields(string(out)) {
		rel, err := filepath.Rel(root, dir)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a dependency from the module cache
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !e.IsDir() {
				needed = append(needed, filepath.ToSlash(filepath.Join(rel, e.Name())))
			}
		}
	}
	if len(needed) < 10 {
		t.Fatalf("go list found only %d files of the build", len(needed))
	}
	for _, rel := range needed {
		if p := ignoredBy(patterns, rel); p != "" {
			t.Errorf(".dockerignore pattern %q leaves out %s, which the image's build needs", p, rel)
		}
	}
}
