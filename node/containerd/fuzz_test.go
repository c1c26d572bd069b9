package containerd

import (
	"path/filepath"
	"strings"
	"testing"
)

// FuzzRender: whatever registry name and mirror address get past the
// checks stay one directory below the certs directory and cannot add lines
// or keys to hosts.toml.
func FuzzRender(f *testing.F) {
	for _, s := range [][2]string{
		{"ghcr.io", "https://mirror:5443"},
		{"registry.local:5000", "http://127.0.0.1:5000"},
		{"..", "https://m"},
		{"a\"b", "https://m\"x"},
		{"_default", "https://m/\nserver"},
		{"x\ny", "https://[::1]:5000"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, rawMirror string) {
		mirror, err := ParseMirror(rawMirror)
		if err != nil || ValidateName(name) != nil {
			return
		}
		root := "/certs"
		for _, dir := range []string{name, DirName(name)} {
			if p := filepath.Join(root, dir); filepath.Dir(p) != root || filepath.Base(p) != dir {
				t.Fatalf("name %q leaves the certs directory: %s", name, p)
			}
		}
		for _, failOpen := range []bool{false, true} {
			got := string(RenderHosts(Registry{Name: name}, mirror, true, failOpen))
			want := string(RenderHosts(Registry{Name: "r"}, "https://m", true, failOpen))
			if strings.Count(got, "\n") != strings.Count(want, "\n") || strings.Count(got, "\"") != strings.Count(want, "\"") {
				t.Fatalf("name %q mirror %q changed the file's shape:\n%s", name, mirror, got)
			}
		}
	})
}
