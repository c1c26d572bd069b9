// Package config reads Portcullis' YAML configuration. Every key has a
// default, so running with no file at all works.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole configuration file.
type Config struct {
	Listen          string     `yaml:"listen"`
	DataDir         string     `yaml:"data_dir"`
	DefaultUpstream string     `yaml:"default_upstream"`
	Upstreams       []Upstream `yaml:"upstreams"`
	TLS             TLS        `yaml:"tls"`
	Cache           Cache      `yaml:"cache"`
	Storage         Storage    `yaml:"storage"`
	Store           Store      `yaml:"store"`
	Policy          string     `yaml:"policy"` // policy file; empty: the default policy (warn mode)
	// PublicURL is where clients reach Portcullis (e.g. behind a load
	// balancer), for the links in error messages; empty: the address the
	// client used.
	PublicURL string `yaml:"public_url"`
	// GateBlobs refuses blobs that belong to blocked images.
	GateBlobs bool `yaml:"gate_blobs"`
	// SigningKey is a cosign private key (cosign.key) that signs the
	// verdicts and SBOMs Portcullis publishes; its password comes from the
	// environment variable SigningKeyPasswordEnv (default COSIGN_PASSWORD).
	SigningKey            string `yaml:"signing_key"`
	SigningKeyPasswordEnv string `yaml:"signing_key_password_env"`
	Scan                  Scan   `yaml:"scan"`
	VulnDB                VulnDB `yaml:"vulndb"`
	Log                   Log    `yaml:"log"`
	Auth                  Auth   `yaml:"auth"`
	Server                Server `yaml:"server"`
	Alerts                Alerts `yaml:"alerts"`
	API                   API    `yaml:"api"`

	// Telemetry switches the metrics (/metrics, OTLP).
	Telemetry Telemetry `yaml:"telemetry"`

	// UI switches the web dashboard under /ui/.
	UI UI `yaml:"ui"`

	// Exceptions bounds the operators' exceptions.
	Exceptions Exceptions `yaml:"exceptions"`
}

// UI is the web dashboard, served beside the status API (on api.listen
// when set, else on the pull port) behind the same tokens.
type UI struct {
	// Enabled serves /ui/; default true.
	Enabled bool `yaml:"enabled"`
	// SessionKeyFile holds the secret (at least 32 bytes) that signs the
	// dashboard's session cookies and CSRF values. Replicas behind one
	// load balancer need the same one; empty: a key made at start (a
	// restart logs everybody out).
	SessionKeyFile string `yaml:"session_key_file"`
}

// Telemetry switches the OpenTelemetry metrics.
type Telemetry struct {
	// Metrics records metrics, served at /metrics and pushed over OTLP
	// when the standard OTEL_EXPORTER_OTLP_* variables name an endpoint.
	// Default true.
	Metrics bool `yaml:"metrics"`
}

// API is where the status API is served and who may call it.
type API struct {
	// Listen serves /api/ (and /metrics) on this address instead of the
	// pull port; empty: on the pull port.
	Listen string `yaml:"listen"`
	// TokensFile maps sha256(token) in hex to {name, scopes: [read|admin]};
	// set, every API call needs Authorization: Bearer <token>.
	TokensFile string `yaml:"tokens_file"`
	// Admission configures the Kubernetes admission webhook.
	Admission Admission `yaml:"admission"`
}

// Server bounds what clients can hold on the listening socket.
type Server struct {
	// MaxConnections caps open client connections; past it new ones wait
	// in the kernel's backlog until one closes.
	MaxConnections int `yaml:"max_connections"`
	// WriteIdleTimeout drops a connection whose client has read nothing of
	// a response for this long; a slow transfer that keeps moving is kept.
	WriteIdleTimeout Duration `yaml:"write_idle_timeout"`
}

// Auth decides who may pull what; off (an open mirror) when empty.
type Auth struct {
	// Htpasswd is a file of bcrypt entries (`htpasswd -B`); set, clients
	// authenticate with Basic credentials on /v2/ and /api/.
	Htpasswd string `yaml:"htpasswd"`
	// Anonymous allows pulls without credentials; Finish sets the default:
	// true without htpasswd, false with it.
	Anonymous *bool `yaml:"anonymous"`
	// Access rules, first match wins; when given, a request no rule
	// matches is denied.
	Access []AccessRule `yaml:"access"`
}

// AccessRule lets users pull from upstreams and repositories (patterns;
// an empty list matches anything).
type AccessRule struct {
	Users        []string `yaml:"users"`
	Upstreams    []string `yaml:"upstreams"`
	Repositories []string `yaml:"repositories"`
}

// Enabled reports whether any auth is configured.
func (a Auth) Enabled() bool { return a.Htpasswd != "" || a.Access != nil }

// Scan configures the background scans of pulled images.
type Scan struct {
	Enabled      bool     `yaml:"enabled"`
	Workers      int      `yaml:"workers"`
	Timeout      Duration `yaml:"timeout"`
	AllPlatforms bool     `yaml:"all_platforms"` // scan every platform of an index, not only those pulled
	// Known-bad files (see malware.go): hash_max_file bounds the files
	// hashed for size-wildcard signatures; clamd, if set, is the address
	// of a clamd every regular file up to clamd_max_file is streamed to.
	HashMaxFile  ByteSize `yaml:"hash_max_file"`
	Clamd        string   `yaml:"clamd"`
	ClamdMaxFile ByteSize `yaml:"clamd_max_file"`
	// SecretsMaxFile is the largest file searched for leaked secrets; 0
	// keeps the scanner's default (1 MiB).
	SecretsMaxFile ByteSize `yaml:"secrets_max_file"`
}

// VulnDB configures the vulnerability database in <data_dir>/vulndb.
type VulnDB struct {
	// UpdateInterval downloads the OSV database this often; 0 never does
	// (import with 'portcullis db import' instead, e.g. offline).
	UpdateInterval Duration `yaml:"update_interval"`
	// SourceURL is where the OSV exports are downloaded from, one
	// <ecosystem>/all.zip under it (a mirror of osv.dev's bucket); empty:
	// osv.dev.
	SourceURL string `yaml:"source_url"`
	// MaxAge: a database older than this (or none) is reported at start,
	// in /readyz, in scan records and in every evaluation that used it (a
	// warn reason: images are tagged, never blocked for it; a rule's
	// max_db_age blocks); 0 never.
	MaxAge Duration `yaml:"max_age"`
}

// Vulnerability database defaults: a first run downloads the database and
// keeps it fresh, and says when it is missing or a week old.
const (
	DefaultVulnDBUpdateInterval = 24 * time.Hour
	DefaultVulnDBMaxAge         = 7 * 24 * time.Hour
)

// Upstream is one registry Portcullis mirrors.
type Upstream struct {
	Name         string   `yaml:"name"`
	URL          string   `yaml:"url"`
	Username     string   `yaml:"username"`
	PasswordFile string   `yaml:"password_file"`
	PasswordEnv  string   `yaml:"password_env"`
	CAFile       string   `yaml:"ca_file"`
	Insecure     bool     `yaml:"insecure"`
	Timeout      Duration `yaml:"timeout"`
	// TagTTL is how long a tag → digest answer is trusted; nil (unset)
	// means 5 minutes, an explicit 0 revalidates every tag request.
	TagTTL  *Duration `yaml:"tag_ttl"`
	Retries int       `yaml:"retries"`
}

// TLS enables HTTPS serving when both files are set.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Cache bounds the content cache and downloads.
type Cache struct {
	MaxBytes     ByteSize `yaml:"max_bytes"`
	FetchTimeout Duration `yaml:"fetch_timeout"`
	IdleTimeout  Duration `yaml:"idle_timeout"`
	// MaxBlobSize bounds one blob download whose size no manifest declared.
	MaxBlobSize ByteSize `yaml:"max_blob_size"`
}

// Storage selects the distribution storage driver for cached content.
type Storage struct {
	Driver     string         `yaml:"driver"`
	Parameters map[string]any `yaml:"parameters"`
}

// Store selects where the state (tag cache, scan records, verdicts,
// relations, published artifacts) lives.
type Store struct {
	Driver string     `yaml:"driver"` // bolt (default: <data_dir>/state.db) or redis
	Redis  RedisStore `yaml:"redis"`
}

// Store drivers.
const (
	StoreBolt  = "bolt"
	StoreRedis = "redis"
)

// RedisStore says how to reach Redis: one address is a standalone server,
// several a cluster, with master_name they are Sentinels.
type RedisStore struct {
	Addrs        []string `yaml:"addrs"`
	MasterName   string   `yaml:"master_name"`
	PasswordFile string   `yaml:"password_file"`
	PasswordEnv  string   `yaml:"password_env"`
	DB           int      `yaml:"db"`
	TLS          bool     `yaml:"tls"`
	CAFile       string   `yaml:"ca_file"`    // with tls: these roots instead of the system's
	KeyPrefix    string   `yaml:"key_prefix"` // default "portcullis"
}

// Log configures the logger.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or text
}

// DefaultTagTTL is how long a tag → digest answer is trusted when an
// upstream sets no tag_ttl.
const DefaultTagTTL = 5 * time.Minute

// Default is the configuration used when no file is given.
func Default() Config {
	return Config{
		Listen:  "127.0.0.1:5000",
		DataDir: "./portcullis-data",
		Upstreams: []Upstream{
			{Name: "docker.io", URL: "https://registry-1.docker.io"},
			{Name: "ghcr.io", URL: "https://ghcr.io"},
			{Name: "quay.io", URL: "https://quay.io"},
			{Name: "registry.k8s.io", URL: "https://registry.k8s.io"},
			{Name: "gcr.io", URL: "https://gcr.io"},
		},
		Cache: Cache{
			FetchTimeout: Duration(time.Hour),
			IdleTimeout:  Duration(2 * time.Minute),

			MaxBlobSize: 32 << 30,
		},
		Storage:   Storage{Driver: "filesystem"},
		GateBlobs: true,
		Scan:      Scan{Enabled: true, Workers: 2, Timeout: Duration(30 * time.Minute), HashMaxFile: DefaultHashMaxFile, ClamdMaxFile: DefaultClamdMaxFile},
		Log:       Log{Level: "info", Format: "json"},
		Server:    Server{MaxConnections: 10000, WriteIdleTimeout: Duration(2 * time.Minute)},
		VulnDB:    VulnDB{UpdateInterval: Duration(DefaultVulnDBUpdateInterval), MaxAge: Duration(DefaultVulnDBMaxAge)},

		Telemetry: Telemetry{Metrics: true},
		UI:        UI{Enabled: true},
		API:       API{Admission: DefaultAdmission()},

		Exceptions: Exceptions{MaxDuration: Duration(DefaultExceptionMaxDuration)},
	}
}

// Load reads a YAML file over the defaults. Unknown keys are errors, with
// their line numbers, so a typo never silently falls back to a default.
func Load(path string) (Config, error) {
	c := Default()
	raw, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	if err := Parse(raw, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML onto c (which holds the defaults). A file that lists
// upstreams replaces the default list.
func Parse(raw []byte, c *Config) error {
	if err := unknownKeys(raw); err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	upstreams := c.Upstreams
	c.Upstreams = nil
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) { // empty file: all defaults
		return err
	}
	if c.Upstreams == nil {
		c.Upstreams = upstreams
	}
	return nil
}

// Finish fills values derived from others and checks the whole
// configuration; call it after flags were applied.
func (c *Config) Finish() error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if c.Listen == "" {
		add("listen: must not be empty")
	}
	if c.DataDir == "" {
		add("data_dir: must not be empty")
	}
	seen := map[string]bool{}
	for i, u := range c.Upstreams {
		u.Name = strings.ToLower(strings.TrimSpace(u.Name))
		c.Upstreams[i].Name = u.Name
		where := fmt.Sprintf("upstreams[%d] (%s)", i, u.Name)
		switch {
		case u.Name == "":
			add("upstreams[%d]: name is required", i)
		case strings.ContainsAny(u.Name, "/ \t"):
			add("%s: name must be a registry host name like ghcr.io", where)
		case seen[u.Name]:
			add("%s: configured twice", where)
		}
		seen[u.Name] = true
		if pu, err := url.Parse(u.URL); err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https") {
			add("%s: url must be http(s)://host[:port]", where)
		} else if pu.User != nil {
			// The URL is logged; credentials belong in username/password_file.
			add("%s: url must not carry credentials; use username and password_file or password_env", where)
		}
		switch {
		case u.TagTTL == nil:
			d := Duration(DefaultTagTTL)
			c.Upstreams[i].TagTTL = &d
		case *u.TagTTL < 0:
			add("%s: tag_ttl must not be negative (0 revalidates every tag request)", where)
		}
		if u.PasswordFile != "" && u.PasswordEnv != "" {
			add("%s: set password_file or password_env, not both", where)
		}
		if (u.PasswordFile != "" || u.PasswordEnv != "") && u.Username == "" {
			add("%s: a password needs a username", where)
		}
	}
	if c.DefaultUpstream == "" && seen["docker.io"] {
		c.DefaultUpstream = "docker.io"
	}
	c.DefaultUpstream = strings.ToLower(c.DefaultUpstream)
	if c.DefaultUpstream != "" && !seen[c.DefaultUpstream] {
		add("default_upstream: %q is not a configured upstream", c.DefaultUpstream)
	}
	if c.PublicURL != "" {
		if pu, err := url.Parse(c.PublicURL); err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https") || pu.RawQuery != "" || pu.Fragment != "" {
			add("public_url: must be http(s)://host[:port][/path], got %q", c.PublicURL)
		}
		c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		add("tls: set both cert_file and key_file, or neither")
	}
	if c.Cache.MaxBytes < 0 {
		add("cache.max_bytes: must not be negative")
	}
	if c.Cache.MaxBlobSize <= 0 {
		add("cache.max_blob_size: must be positive")
	}
	if c.Cache.FetchTimeout <= 0 || c.Cache.IdleTimeout <= 0 {
		add("cache.fetch_timeout and cache.idle_timeout must be positive")
	}
	if c.Scan.Workers < 1 || c.Scan.Timeout <= 0 {
		add("scan.workers must be at least 1 and scan.timeout positive")
	}
	if c.Scan.SecretsMaxFile < 0 {
		add("scan.secrets_max_file must not be negative")
	}
	if c.Server.MaxConnections < 1 {
		add("server.max_connections must be at least 1")
	}
	if c.Server.WriteIdleTimeout <= 0 {
		add("server.write_idle_timeout must be positive")
	}
	if c.VulnDB.UpdateInterval < 0 {
		add("vulndb.update_interval must not be negative")
	}
	if c.VulnDB.MaxAge < 0 {
		add("vulndb.max_age must not be negative (0 never reports the age)")
	}
	if c.VulnDB.SourceURL != "" {
		if pu, err := url.Parse(c.VulnDB.SourceURL); err != nil || pu.Host == "" || (pu.Scheme != "http" && pu.Scheme != "https") || pu.User != nil || pu.RawQuery != "" {
			add("vulndb.source_url: must be http(s)://host[:port][/path] without credentials or query, got %q", c.VulnDB.SourceURL)
		}
	}
	if c.Storage.Driver == "" {
		c.Storage.Driver = "filesystem"
	}
	if c.Storage.Parameters == nil {
		c.Storage.Parameters = map[string]any{}
	}
	if c.Storage.Driver == "filesystem" {
		if _, ok := c.Storage.Parameters["rootdirectory"]; !ok {
			abs, err := filepath.Abs(filepath.Join(c.DataDir, "cache"))
			if err != nil {
				add("data_dir: %v", err)
			}
			c.Storage.Parameters["rootdirectory"] = abs
		}
	}
	c.finishStore(add)
	c.finishAlerts(add)
	c.finishMalwareScan(add)
	c.finishExceptions(add)
	if c.Auth.Anonymous == nil {
		anonymous := c.Auth.Htpasswd == ""
		c.Auth.Anonymous = &anonymous
	}
	if !*c.Auth.Anonymous && c.Auth.Htpasswd == "" {
		add("auth.anonymous: false needs auth.htpasswd (nobody could pull)")
	}
	if c.Auth.Access != nil && len(c.Auth.Access) == 0 {
		add("auth.access: an empty list denies everyone; leave it out to allow everyone")
	}
	for i, r := range c.Auth.Access {
		for _, u := range r.Upstreams {
			// A misspelt registry would silently never match.
			if !strings.Contains(u, "*") && !seen[strings.ToLower(u)] {
				add("auth.access[%d].upstreams: %q is not a configured upstream", i, u)
			}
		}
	}
	if c.API.Listen != "" {
		if _, _, err := net.SplitHostPort(c.API.Listen); err != nil {
			add("api.listen: %q must be host:port", c.API.Listen)
		} else if c.API.Listen == c.Listen {
			add("api.listen: the same address as listen; leave it out to serve the API on the pull port")
		}
	}
	problems = append(problems, c.API.Admission.check()...)
	if c.API.TokensFile != "" {
		if _, err := os.Stat(c.API.TokensFile); err != nil {
			add("api.tokens_file: %v", err)
		}
	}
	if c.UI.SessionKeyFile != "" {
		if _, err := os.Stat(c.UI.SessionKeyFile); err != nil {
			add("ui.session_key_file: %v", err)
		}
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		add("log.format: %q must be json or text", c.Log.Format)
	}
	if len(problems) > 0 {
		return errors.New("invalid configuration:\n  " + strings.Join(problems, "\n  "))
	}
	return nil
}

// Password reads the upstream's password from its file or environment
// variable; it is never part of the configuration itself.
func (u Upstream) Password() (string, error) {
	switch {
	case u.PasswordFile != "":
		b, err := os.ReadFile(u.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("upstream %s: read password_file: %w", u.Name, err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case u.PasswordEnv != "":
		v, ok := os.LookupEnv(u.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("upstream %s: environment variable %s (password_env) is not set", u.Name, u.PasswordEnv)
		}
		return v, nil
	}
	return "", nil
}

// finishStore checks the store section; the Redis connection itself is
// checked when the server starts.
func (c *Config) finishStore(add func(format string, args ...any)) {
	if c.Store.Driver == "" {
		c.Store.Driver = StoreBolt
	}
	r := c.Store.Redis
	switch c.Store.Driver {
	case StoreBolt:
	case StoreRedis:
		if len(r.Addrs) == 0 {
			add("store.redis.addrs: at least one host:port is required with store.driver redis")
		}
		if r.DB < 0 {
			add("store.redis.db: must not be negative")
		}
		if r.DB != 0 && r.MasterName == "" && len(r.Addrs) > 1 {
			add("store.redis.db: a Redis Cluster has only db 0")
		}
		if r.PasswordFile != "" && r.PasswordEnv != "" {
			add("store.redis: set password_file or password_env, not both")
		}
		if r.CAFile != "" && !r.TLS {
			add("store.redis.ca_file: needs tls: true")
		}
		if strings.ContainsAny(r.KeyPrefix, "{}") {
			add("store.redis.key_prefix: must not contain { or } (they would become every key's hash tag)")
		}
	default:
		add("store.driver: %q must be %s or %s", c.Store.Driver, StoreBolt, StoreRedis)
	}
}
