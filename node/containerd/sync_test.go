package containerd

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const testMirror = "https://mirror.example:5443"

func desired(names ...string) Desired {
	d := Desired{Mirror: testMirror}
	for _, n := range names {
		d.Registries = append(d.Registries, Registry{Name: n})
	}
	return d
}

func mustSync(t *testing.T, dir string, d Desired) Result {
	t.Helper()
	res, err := Sync(dir, d)
	if err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return res
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func testCA(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestSyncWritesEveryRegistryAndDefault(t *testing.T) {
	dir := t.TempDir()
	res := mustSync(t, dir, desired("docker.io", "ghcr.io", "registry.local:5000"))
	for _, name := range []string{"_default", "docker.io", "ghcr.io", "registry.local_5000_"} {
		got := readFile(t, filepath.Join(dir, name, HostsFile))
		if !strings.HasPrefix(got, Marker+"\n") {
			t.Errorf("%s: no marker line:\n%s", name, got)
		}
		// Fail closed: the implicit last host (server) is the mirror.
		if !strings.Contains(got, "\nserver = \""+testMirror+"\"\n") || !strings.Contains(got, "[host.\""+testMirror+"\"]") {
			t.Errorf("%s: want server and [host] both the mirror:\n%s", name, got)
		}
	}
	if len(res.Written) != 4 || len(res.Foreign) != 0 || len(res.Removed) != 0 {
		t.Errorf("result %+v: want 4 written", res)
	}
	if again := mustSync(t, dir, desired("docker.io", "ghcr.io", "registry.local:5000")); again.Changed() {
		t.Errorf("second pass changed files: %+v", again)
	}
}

func TestRenderFailOpen(t *testing.T) {
	tests := []struct {
		reg        Registry
		wantServer string // "" → no server line
	}{
		{Registry{Name: "ghcr.io", Origin: "https://ghcr.io"}, `server = "https://ghcr.io"`},
		{Registry{Name: "_default"}, ""},
	}
	for _, tc := range tests {
		got := string(RenderHosts(tc.reg, testMirror, false, true))
		if tc.wantServer == "" && strings.Contains(got, "\nserver") {
			t.Errorf("%s: fail open without origin must leave server to containerd:\n%s", tc.reg.Name, got)
		}
		if tc.wantServer != "" && !strings.Contains(got, "\n"+tc.wantServer+"\n") {
			t.Errorf("%s: want %s:\n%s", tc.reg.Name, tc.wantServer, got)
		}
		if strings.Contains(got, "server = \""+testMirror) {
			t.Errorf("%s: fail open must not make the mirror the server:\n%s", tc.reg.Name, got)
		}
	}
}

func TestSyncRepairsDrift(t *testing.T) {
	tests := []struct {
		name  string
		drift func(t *testing.T, p string)
	}{
		{"edited, marker kept", func(t *testing.T, p string) {
			writeFile(t, p, Marker+"\nserver = \"https://ghcr.io\"\n[host.\"https://evil\"]\n")
		}},
		{"deleted", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated", func(t *testing.T, p string) { writeFile(t, p, Marker+"\n") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			d := desired("ghcr.io")
			mustSync(t, dir, d)
			p := filepath.Join(dir, "ghcr.io", HostsFile)
			want := readFile(t, p)
			tc.drift(t, p)
			res := mustSync(t, dir, d)
			if got := readFile(t, p); got != want {
				t.Errorf("not repaired:\n%s", got)
			}
			if !slices.Equal(res.Written, []string{p}) {
				t.Errorf("written %v, want [%s]", res.Written, p)
			}
		})
	}
}

func TestSyncLeavesForeignFilesAlone(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string) string // returns the foreign path
	}{
		{"foreign hosts.toml", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "ghcr.io", HostsFile)
			writeFile(t, p, "server = \"https://ghcr.io\"\n")
			return p
		}},
		{"marker not on the first line", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "ghcr.io", HostsFile)
			writeFile(t, p, "# mine\n"+Marker+"\n")
			return p
		}},
		{"foreign CA file", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "ghcr.io", CAFile)
			writeFile(t, p, "not ours\n")
			return p
		}},
		{"symlinked directory", func(t *testing.T, dir string) string {
			target := t.TempDir()
			p := filepath.Join(dir, "ghcr.io")
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			return p
		}},
		{"symlinked hosts.toml", func(t *testing.T, dir string) string {
			target := filepath.Join(t.TempDir(), "x")
			writeFile(t, target, Marker+"\n")
			p := filepath.Join(dir, "ghcr.io", HostsFile)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
			return p
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			foreignPath := tc.prepare(t, dir)
			before := snapshot(t, dir)
			res := mustSync(t, dir, desired("ghcr.io"))
			if !slices.Contains(res.Foreign, foreignPath) {
				t.Errorf("foreign %v, want %s", res.Foreign, foreignPath)
			}
			after := snapshot(t, dir)
			for p, content := range before {
				if after[p] != content {
					t.Errorf("%s changed:\nbefore %q\nafter  %q", p, content, after[p])
				}
			}
			// The other registries are still written.
			if !strings.HasPrefix(readFile(t, filepath.Join(dir, "_default", HostsFile)), Marker) {
				t.Error("_default not written")
			}
			// Dropping the registry must not remove a foreign file either.
			mustSync(t, dir, desired())
			for p, content := range before {
				if snapshot(t, dir)[p] != content {
					t.Errorf("%s changed after the registry was dropped", p)
				}
			}
		})
	}
}

// snapshot maps every path below dir (symlinks not followed) to its
// content or link target.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			out[p] = "-> " + target
			return err
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			out[p] = string(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSyncRemovesOnlyItsOwnFiles(t *testing.T) {
	dir := t.TempDir()
	ca := testCA(t)
	d := desired("ghcr.io", "quay.io")
	d.CA = ca
	mustSync(t, dir, d)
	// Someone else keeps a client certificate in quay.io's directory.
	other := filepath.Join(dir, "quay.io", "client.cert")
	writeFile(t, other, "theirs")

	d.Registries = d.Registries[:1] // quay.io is dropped, ghcr.io stays
	res := mustSync(t, dir, d)
	wantRemoved := []string{filepath.Join(dir, "quay.io", HostsFile), filepath.Join(dir, "quay.io", CAFile)}
	if !slices.Equal(res.Removed, wantRemoved) {
		t.Errorf("removed %v, want %v", res.Removed, wantRemoved)
	}
	if readFile(t, other) != "theirs" {
		t.Error("foreign file in a dropped registry's directory was touched")
	}
	mustSync(t, dir, desired())
	if _, err := os.Stat(filepath.Join(dir, "ghcr.io")); !os.IsNotExist(err) {
		t.Errorf("empty directory of a dropped registry still there: %v", err)
	}
}

func TestSyncCAFile(t *testing.T) {
	dir := t.TempDir()
	d := desired("ghcr.io")
	d.CA = testCA(t)
	mustSync(t, dir, d)
	caPath := filepath.Join(dir, "ghcr.io", CAFile)
	got := readFile(t, caPath)
	if !strings.HasPrefix(got, Marker+"\n") || !strings.Contains(got, string(d.CA)) {
		t.Errorf("CA file:\n%s", got)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(got)) {
		t.Error("the CA file with its marker line does not parse as PEM")
	}
	hosts := readFile(t, filepath.Join(dir, "ghcr.io", HostsFile))
	if strings.Count(hosts, "ca = \""+CAFile+"\"") != 2 {
		t.Errorf("want the CA on server and host:\n%s", hosts)
	}
	// Without a CA the file goes and hosts.toml stops naming it.
	d.CA = nil
	mustSync(t, dir, d)
	if _, err := os.Stat(caPath); !os.IsNotExist(err) {
		t.Errorf("CA file still there: %v", err)
	}
	if strings.Contains(readFile(t, filepath.Join(dir, "ghcr.io", HostsFile)), "ca =") {
		t.Error("hosts.toml still names a CA")
	}
}

// TestSyncReplacesByRename: a reader holding the old file open sees the old
// content whole (a rewrite in place would show it truncated or new), and no
// temporary file is left behind.
func TestSyncReplacesByRename(t *testing.T) {
	dir := t.TempDir()
	mustSync(t, dir, desired("ghcr.io"))
	p := filepath.Join(dir, "ghcr.io", HostsFile)
	old := readFile(t, p)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stale := filepath.Join(dir, "ghcr.io", tempPrefix+"hosts.toml-123")
	writeFile(t, stale, "half")

	d := desired("ghcr.io")
	d.Mirror = "https://other.example"
	mustSync(t, dir, d)
	seen, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if string(seen) != old {
		t.Errorf("an open reader saw %q, want the old file whole", seen)
	}
	if !strings.Contains(readFile(t, p), "https://other.example") {
		t.Error("new mirror not written")
	}
	entries, err := os.ReadDir(filepath.Join(dir, "ghcr.io"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestSyncRefusesBadInput(t *testing.T) {
	tests := []struct {
		name string
		d    Desired
	}{
		{"path traversal", desired("..")},
		{"slash", desired("ghcr.io/x")},
		{"upper case", desired("GHCR.io")},
		{"newline", desired("ghcr.io\nserver")},
		{"ipv6", desired("[::1]:5000")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Sync(dir, tc.d); err == nil {
				t.Fatal("accepted")
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("wrote %d entries before refusing", len(entries))
			}
		})
	}
	if _, err := Sync(filepath.Join(t.TempDir(), "missing"), desired()); err == nil {
		t.Error("a missing certs directory was accepted")
	}
}

func TestParseMirrorAndCA(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"https://mirror:5443", "https://mirror:5443"},
		{"https://mirror/", "https://mirror"},
		{"http://127.0.0.1:5000", "http://127.0.0.1:5000"},
		{"mirror:5443", ""},
		{"https://u:p@mirror", ""},
		{"https://mirror/v2", ""},
		{"https://mirror?x=1", ""},
		{"ftp://mirror", ""},
		{"https://", ""},
	}
	for _, tc := range tests {
		got, err := ParseMirror(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("ParseMirror(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if err := CheckCA(testCA(t)); err != nil {
		t.Errorf("CheckCA(good): %v", err)
	}
	for name, data := range map[string][]byte{
		"empty":       nil,
		"not PEM":     []byte("hello"),
		"private key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}),
		"bad cert":    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}),
		"too large":   bytes.Repeat([]byte("a"), MaxCABytes+1),
	} {
		if err := CheckCA(data); err == nil {
			t.Errorf("CheckCA(%s) accepted", name)
		}
	}
}

// TestSyncPortDirectory: a registry with a port gets containerd's
// "host_port_" directory, looked up before "host:port"; a hand-written
// "host:port" directory is neither touched nor removed.
func TestSyncPortDirectory(t *testing.T) {
	dir := t.TempDir()
	theirs := filepath.Join(dir, "registry.local:5000", HostsFile)
	writeFile(t, theirs, "server = \"https://registry.local:5000\"\n")
	mustSync(t, dir, desired("registry.local:5000"))
	if got := readFile(t, filepath.Join(dir, "registry.local_5000_", HostsFile)); !strings.HasPrefix(got, Marker) {
		t.Errorf("no managed registry.local_5000_/hosts.toml:\n%s", got)
	}
	res := mustSync(t, dir, desired())
	if want := filepath.Join(dir, "registry.local_5000_", HostsFile); !slices.Contains(res.Removed, want) {
		t.Errorf("removed %v, want %s", res.Removed, want)
	}
	if readFile(t, theirs) != "server = \"https://registry.local:5000\"\n" {
		t.Error("the hand-written host:port file was touched")
	}
}
