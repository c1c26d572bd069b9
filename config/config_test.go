package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultsFinish(t *testing.T) {
	c := Default()
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:5000" || c.DefaultUpstream != "docker.io" || len(c.Upstreams) != 5 {
		t.Fatalf("defaults: %+v", c)
	}
	if root, _ := c.Storage.Parameters["rootdirectory"].(string); !filepath.IsAbs(root) || !strings.HasSuffix(root, filepath.Join("portcullis-data", "cache")) {
		t.Fatalf("rootdirectory %q", root)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, yaml string
		check      func(t *testing.T, c Config)
		errHas     string
	}{
		{name: "empty file keeps defaults", yaml: "", check: func(t *testing.T, c Config) {
			if len(c.Upstreams) != 5 {
				t.Fatalf("upstreams %v", c.Upstreams)
			}
		}},
		{name: "full", yaml: `
listen: 0.0.0.0:443
data_dir: /var/lib/portcullis
default_upstream: ghcr.io
upstreams:
  - name: ghcr.io
    url: https://ghcr.io
    username: bot
    password_env: GHCR_TOKEN
    tag_ttl: 1m
    timeout: 10s
  - {name: local, url: "http://127.0.0.1:5001", insecure: true}
cache: {max_bytes: 20GiB, fetch_timeout: 2h, idle_timeout: 1m}
tls: {cert_file: c.pem, key_file: k.pem}
`, check: func(t *testing.T, c Config) {
			if c.Listen != "0.0.0.0:443" || c.DefaultUpstream != "ghcr.io" || len(c.Upstreams) != 2 {
				t.Fatalf("%+v", c)
			}
			if c.Upstreams[0].TagTTL == nil || *c.Upstreams[0].TagTTL != Duration(time.Minute) || c.Cache.MaxBytes != 20<<30 || c.Upstreams[0].PasswordEnv != "GHCR_TOKEN" {
				t.Fatalf("%+v", c)
			}
		}},
		{name: "unknown key has its line", yaml: "listen: x\nlisten_addr: y\n", errHas: "line 2"},
		{name: "bad size", yaml: "cache:\n  max_bytes: lots\n", errHas: "line 2"},
		{name: "max blob size default", yaml: "", check: func(t *testing.T, c Config) {
			if c.Cache.MaxBlobSize != 32<<30 {
				t.Fatalf("default cache.max_blob_size %d, want 32GiB", c.Cache.MaxBlobSize)
			}
		}},
		{name: "max blob size", yaml: "cache: {max_blob_size: 1MiB}\n", check: func(t *testing.T, c Config) {
			if c.Cache.MaxBlobSize != 1<<20 {
				t.Fatalf("cache.max_blob_size %d, want 1MiB", c.Cache.MaxBlobSize)
			}
		}},
		{name: "bad max blob size", yaml: "cache:\n  max_blob_size: huge\n", errHas: "line 2"},
		{name: "bad duration", yaml: "upstreams:\n  - name: a\n    url: https://a\n    tag_ttl: soon\n", errHas: "line 4"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			err := Parse([]byte(tc.yaml), &c)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("error %v, want it to contain %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

// tag_ttl: 0 is an explicit "revalidate every tag request", distinct from
// leaving the key out (5 minutes).
func TestTagTTLZeroIsNotUnset(t *testing.T) {
	tests := []struct {
		name, ttl string
		want      time.Duration
		errHas    string
	}{
		{name: "unset", want: DefaultTagTTL},
		{name: "zero", ttl: "0", want: 0},
		{name: "zero seconds", ttl: "0s", want: 0},
		{name: "one minute", ttl: "1m", want: time.Minute},
		{name: "negative", ttl: "-1s", errHas: "tag_ttl must not be negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			yaml := "upstreams:\n  - name: a.test\n    url: https://a.test\n"
			if tc.ttl != "" {
				yaml += "    tag_ttl: " + tc.ttl + "\n"
			}
			c := Default()
			if err := Parse([]byte(yaml), &c); err != nil {
				t.Fatal(err)
			}
			err := c.Finish()
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("error %v, want it to contain %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Upstreams[0].TagTTL; got == nil || time.Duration(*got) != tc.want {
				t.Fatalf("tag_ttl %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFinishRejects(t *testing.T) {
	tests := map[string]func(c *Config){
		"unknown default":         func(c *Config) { c.DefaultUpstream = "nope.io" },
		"duplicate upstream":      func(c *Config) { c.Upstreams = append(c.Upstreams, Upstream{Name: "GHCR.io", URL: "https://x"}) },
		"bad url":                 func(c *Config) { c.Upstreams[0].URL = "ftp://x" },
		"credentials in url":      func(c *Config) { c.Upstreams[0].URL = "https://bot:secret@ghcr.io" },
		"name with slash":         func(c *Config) { c.Upstreams[0].Name = "a/b" },
		"password without user":   func(c *Config) { c.Upstreams[0].PasswordFile = "/p" },
		"half tls":                func(c *Config) { c.TLS.CertFile = "c.pem" },
		"bad log format":          func(c *Config) { c.Log.Format = "xml" },
		"public_url no scheme":    func(c *Config) { c.PublicURL = "mirror.example.com" },
		"public_url with query":   func(c *Config) { c.PublicURL = "https://mirror.example.com/?x=1" },
		"public_url ftp":          func(c *Config) { c.PublicURL = "ftp://mirror.example.com" },
		"no connections":          func(c *Config) { c.Server.MaxConnections = 0 },
		"no write idle timeout":   func(c *Config) { c.Server.WriteIdleTimeout = 0 },
		"zero max_blob_size":      func(c *Config) { c.Cache.MaxBlobSize = 0 },
		"api.listen no port":      func(c *Config) { c.API.Listen = "127.0.0.1" },
		"api.listen is listen":    func(c *Config) { c.API.Listen = c.Listen },
		"missing tokens_file":     func(c *Config) { c.API.TokensFile = "/nonexistent/tokens.yaml" },
		"negative vulndb.max_age": func(c *Config) { c.VulnDB.MaxAge = -1 },
		"vulndb.source_url ftp":   func(c *Config) { c.VulnDB.SourceURL = "ftp://osv.example.com/" },
		"vulndb.source_url creds": func(c *Config) { c.VulnDB.SourceURL = "https://u:p@osv.example.com/" },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			c := Default()
			mutate(&c)
			if err := c.Finish(); err == nil {
				t.Fatal("Finish accepted an invalid configuration")
			}
		})
	}
}

func TestPublicURLLosesTrailingSlash(t *testing.T) {
	c := Default()
	c.PublicURL = "https://mirror.example.com/portcullis/"
	if err := c.Finish(); err != nil || c.PublicURL != "https://mirror.example.com/portcullis" {
		t.Fatalf("%q, %v", c.PublicURL, err)
	}
}

func TestPassword(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "pw")
	if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pw, err := (Upstream{Name: "a", PasswordFile: f}).Password(); err != nil || pw != "s3cret" {
		t.Fatalf("file: %q %v", pw, err)
	}
	t.Setenv("PORTCULLIS_TEST_PW", "fromenv")
	if pw, err := (Upstream{Name: "a", PasswordEnv: "PORTCULLIS_TEST_PW"}).Password(); err != nil || pw != "fromenv" {
		t.Fatalf("env: %q %v", pw, err)
	}
	if _, err := (Upstream{Name: "a", PasswordEnv: "PORTCULLIS_TEST_UNSET_VAR"}).Password(); err == nil {
		t.Fatal("unset env var accepted")
	}
}

func TestParseByteSize(t *testing.T) {
	tests := map[string]int64{"0": 0, "1024": 1024, "1KiB": 1024, "1.5GiB": 3 << 29, "10GB": 10e9, "512M": 512 << 20, "2 TiB": 2 << 40, "7B": 7}
	for in, want := range tests {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "GiB", "1XB", "NaN", "1e400", "Inf"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", bad)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := map[string]time.Duration{"30s": 30 * time.Second, "5m": 5 * time.Minute, "7d": 7 * 24 * time.Hour, "1h30m": 90 * time.Minute}
	for in, want := range tests {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "-1d", "1.5d", "soon"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("listen: x\nupstreams:\n  - {name: a, url: 'http://a'}\ncache: {max_bytes: 1GiB}\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c := Default()
		if err := Parse(raw, &c); err != nil {
			return
		}
		_ = c.Finish()
	})
}

func FuzzParseByteSize(f *testing.F) {
	f.Add("1.5GiB")
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := ParseByteSize(s); err == nil && v < 0 {
			t.Fatalf("ParseByteSize(%q) = %d", s, v)
		}
	})
}

// The documented example must stay a valid configuration.
func TestDeployExampleLoads(t *testing.T) {
	c, err := Load(filepath.Join("..", "deploy", "portcullis.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	if len(c.Upstreams) != 5 || c.Upstreams[0].TagTTL == nil || *c.Upstreams[0].TagTTL != Duration(5*time.Minute) {
		t.Fatalf("%+v", c.Upstreams)
	}
}

func TestAuthSection(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		anonymous  bool
		rules      int
		errHas     string
	}{
		{name: "no auth: anonymous, open", yaml: "", anonymous: true},
		{name: "htpasswd: anonymous off by default", yaml: "auth: {htpasswd: /etc/p}\n", anonymous: false},
		{name: "htpasswd with anonymous pulls", yaml: "auth: {htpasswd: /etc/p, anonymous: true}\n", anonymous: true},
		{name: "rules", yaml: `
auth:
  htpasswd: /etc/p
  access:
    - users: ["ci-*"]
      upstreams: [GHCR.io]
      repositories: ["acme/**"]
    - users: [admin]
`, rules: 2},
		{name: "anonymous false without htpasswd", yaml: "auth: {anonymous: false}\n", errHas: "auth.anonymous: false needs auth.htpasswd"},
		{name: "empty access list", yaml: "auth: {htpasswd: /etc/p, access: []}\n", errHas: "auth.access: an empty list denies everyone"},
		{name: "unknown upstream", yaml: "auth:\n  access:\n    - upstreams: [ghrc.io]\n", errHas: `auth.access[0].upstreams: "ghrc.io" is not a configured upstream`},
		{name: "unknown key", yaml: "auth:\n  access:\n    - user: [x]\n", errHas: "line 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			err := Parse([]byte(tc.yaml), &c)
			if err == nil {
				err = c.Finish()
			}
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("error %v, want %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *c.Auth.Anonymous != tc.anonymous || len(c.Auth.Access) != tc.rules {
				t.Fatalf("anonymous %v, %d rules; want %v, %d", *c.Auth.Anonymous, len(c.Auth.Access), tc.anonymous, tc.rules)
			}
		})
	}
}

func TestAPISection(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens.yaml")
	if err := os.WriteFile(tokens, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(path, []byte("api:\n  listen: 127.0.0.1:5001\n  tokens_file: "+tokens+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(); err != nil || c.API.Listen != "127.0.0.1:5001" || c.API.TokensFile != tokens {
		t.Fatalf("%+v %v", c.API, err)
	}
}

// With no configuration the database is downloaded (daily) and its age
// reported after a week.
func TestVulnDBDefaults(t *testing.T) {
	c := Default()
	if err := c.Finish(); err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.VulnDB.UpdateInterval) != 24*time.Hour || time.Duration(c.VulnDB.MaxAge) != 7*24*time.Hour {
		t.Fatalf("vulndb defaults %+v", c.VulnDB)
	}
	if err := Parse([]byte("vulndb: {update_interval: 0, max_age: 3d, source_url: 'http://127.0.0.1:8080/osv'}\n"), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(); err != nil || c.VulnDB.UpdateInterval != 0 || time.Duration(c.VulnDB.MaxAge) != 72*time.Hour {
		t.Fatalf("vulndb after parse: %+v, %v", c.VulnDB, err)
	}
}

func TestScanSecretsMaxFile(t *testing.T) {
	c := Default()
	if err := Parse([]byte("scan: {secrets_max_file: 2MiB}\n"), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(); err != nil || c.Scan.SecretsMaxFile != 2<<20 {
		t.Fatalf("scan.secrets_max_file %d, %v", c.Scan.SecretsMaxFile, err)
	}
	c.Scan.SecretsMaxFile = -1
	if err := c.Finish(); err == nil {
		t.Fatal("a negative scan.secrets_max_file was accepted")
	}
}
