package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNodeContainerdCommand(t *testing.T) {
	cfgDir := t.TempDir()
	cfg := filepath.Join(cfgDir, "portcullis.yaml")
	if err := os.WriteFile(cfg, []byte("upstreams:\n  - name: registry.local:5000\n    url: http://10.0.0.1:5000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badCA := filepath.Join(cfgDir, "bad.pem")
	if err := os.WriteFile(badCA, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string // after --certs-dir DIR
		foreign  bool     // a hand-written ghcr.io/hosts.toml exists
		wantCode int
		wantDirs []string
		wantOut  string
		wantFile string // substring of registry.local:5000/hosts.toml
	}{
		{name: "built-in upstreams", args: []string{"--mirror", "https://m:5443"}, wantCode: 0,
			wantDirs: []string{"_default", "docker.io", "ghcr.io", "quay.io", "registry.k8s.io", "gcr.io"}},
		{name: "configured upstream, fail closed", args: []string{"--mirror", "https://m:5443", "--config", cfg}, wantCode: 0,
			wantDirs: []string{"_default", "registry.local_5000_"}, wantFile: "server = \"https://m:5443\""},
		{name: "fail open uses the upstream url", args: []string{"--mirror", "https://m:5443", "--config", cfg, "--fail-open"}, wantCode: 0,
			wantDirs: []string{"_default", "registry.local_5000_"}, wantFile: "server = \"http://10.0.0.1:5000\""},
		{name: "no mirror", args: nil, wantCode: 2, wantOut: "--mirror is required"},
		{name: "mirror with a path", args: []string{"--mirror", "https://m/v2"}, wantCode: 1, wantOut: "without a path"},
		{name: "bad CA", args: []string{"--mirror", "https://m", "--ca-file", badCA}, wantCode: 1, wantOut: "no PEM certificate"},
		{name: "bad interval", args: []string{"--mirror", "https://m", "--watch", "--interval", "1ms"}, wantCode: 1, wantOut: "interval"},
		{name: "interval without watch", args: []string{"--mirror", "https://m", "--interval", "5s"}, wantCode: 1, wantOut: "--interval needs --watch"},
		{name: "foreign file", args: []string{"--mirror", "https://m"}, foreign: true, wantCode: 1, wantOut: "left alone"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			certs := t.TempDir()
			if tc.foreign {
				if err := os.MkdirAll(filepath.Join(certs, "ghcr.io"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(certs, "ghcr.io", "hosts.toml"), []byte("server = \"https://ghcr.io\"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var stdout, stderr bytes.Buffer
			args := append([]string{"node", "containerd", "--certs-dir", certs}, tc.args...)
			code := run(context.Background(), args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\n%s", code, tc.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.wantOut) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantOut, stderr.String())
			}
			for _, d := range tc.wantDirs {
				if _, err := os.Stat(filepath.Join(certs, d, "hosts.toml")); err != nil {
					t.Errorf("%s: %v", d, err)
				}
			}
			if tc.wantFile != "" {
				b, err := os.ReadFile(filepath.Join(certs, "registry.local_5000_", "hosts.toml"))
				if err != nil || !strings.Contains(string(b), tc.wantFile) {
					t.Errorf("hosts.toml lacks %q (%v):\n%s", tc.wantFile, err, b)
				}
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"node", "containerd", "--help"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "-fail-open") {
		t.Errorf("--help: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
}

// The agent runs on nodes with the server's configuration but without the
// files only the server reads: they do not stop it.
func TestNodeAgentIgnoresServerOnlyFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "portcullis.yaml")
	os.WriteFile(cfg, []byte(`upstreams: [{name: ghcr.io, url: "https://ghcr.io"}]
api: {listen: ":5001", tokens_file: /nonexistent/tokens.yaml}
alerts:
  webhooks:
    - {name: chat, url_file: /nonexistent/url, format: slack, events: [block]}
`), 0o600)
	d, err := loadNodeDesired(cfg, "", "https://mirror.example:30500", false)
	if err != nil {
		t.Fatalf("loadNodeDesired: %v", err)
	}
	if len(d.Registries) != 1 || d.Registries[0].Name != "ghcr.io" {
		t.Fatalf("registries %+v", d.Registries)
	}
}

// A configuration file caught empty (rewritten in place) is refused, so a
// watching agent keeps its last good configuration instead of swapping the
// configured registries for the built-in ones.
func TestNodeAgentRefusesEmptyConfig(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(cfg, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadNodeDesired(cfg, "", "https://mirror.example:30500", false); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("empty configuration: %v", err)
	}
}
