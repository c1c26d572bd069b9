package auth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/cache"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/test/harness"
)

// authEnv is an upstream registry (counting its requests) and a proxy in
// front of it wrapped by Auth, the way serve wires them.
type authEnv struct {
	url       string
	upstream  atomic.Int64
	logs      *harness.LogBuffer
	blobOfApp string
}

const (
	botPassword   = "bot-Passw0rd-xyz"
	adminPassword = "admin-Passw0rd-xyz"
)

func newAuthEnv(t *testing.T, anonymous bool, rules []Rule) *authEnv {
	t.Helper()
	e := &authEnv{logs: &harness.LogBuffer{}}
	reg := ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0)))
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.upstream.Add(1)
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(up.Close)
	upHost := strings.TrimPrefix(up.URL, "http://")
	for _, repo := range []string{"acme/app", "other/x"} {
		img, err := random.Image(512, 1)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := name.ParseReference(upHost + "/" + repo + ":1")
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, img); err != nil {
			t.Fatal(err)
		}
		if repo == "acme/app" {
			ls, _ := img.Layers()
			d, _ := ls[0].Digest()
			e.blobOfApp = d.String()
		}
	}
	e.upstream.Store(0)

	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	content := "ci-bot:" + bcryptHash(t, botPassword, "2y") + "\nadmin:" + bcryptHash(t, adminPassword, "2b") + "\n"
	if err := os.WriteFile(htpasswd, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := New(Config{Htpasswd: htpasswd, Anonymous: anonymous, Access: rules, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	ctx := context.Background()
	content2, err := cache.Open(ctx, cache.Config{Parameters: map[string]any{"rootdirectory": filepath.Join(dir, "cache")}, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	state, err := store.OpenBolt(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { state.Close() })
	client, err := upstream.New(upstream.Config{Name: "up.test", URL: up.URL})
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(proxy.Options{
		Upstreams:       []proxy.Upstream{{Client: client}},
		DefaultUpstream: "up.test",
		Cache:           content2,
		Fetcher:         cache.NewFetcher(content2, time.Minute, 10*time.Second, logger),
		State:           state,
		Logger:          logger,
		Access:          a,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", a.Registry(p))
	mux.Handle("/api/", a.API(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"user":"`+a.User(r.Context())+`"}`)
	})))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	return e
}

type reply struct {
	status    int
	challenge string
	code      string
	body      string
}

func (e *authEnv) get(t *testing.T, path, authorization string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var oci struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	r := reply{status: resp.StatusCode, challenge: resp.Header.Get("WWW-Authenticate"), body: string(body)}
	if json.Unmarshal(body, &oci) == nil && len(oci.Errors) > 0 {
		r.code = oci.Errors[0].Code
	}
	return r
}

var accessRules = []Rule{
	{Users: []string{"ci-*"}, Upstreams: []string{"up.test"}, Repositories: []string{"acme/**"}},
	{Users: []string{"admin"}},
}

func TestRegistryAuthentication(t *testing.T) {
	bot, admin := basicHeader("ci-bot", botPassword), basicHeader("admin", adminPassword)
	for _, anonymous := range []bool{false, true} {
		e := newAuthEnv(t, anonymous, accessRules)
		for _, tc := range []struct {
			name, path, auth string
			status           int
			code             string // OCI error code, for errors
			upstream         bool   // the request may reach the upstream
		}{
			{"ping without credentials is challenged", "/v2/", "", 401, "UNAUTHORIZED", false},
			{"ping with credentials", "/v2/", bot, 200, "", false},
			{"ping with a wrong password", "/v2/", basicHeader("ci-bot", "nope"), 401, "UNAUTHORIZED", false},
			{"unknown user", "/v2/up.test/acme/app/manifests/1", basicHeader("mallory", botPassword), 401, "UNAUTHORIZED", false},
			{"bearer token", "/v2/up.test/acme/app/manifests/1", "Bearer abc", 401, "UNAUTHORIZED", false},
			{"ci-bot may pull acme/**", "/v2/up.test/acme/app/manifests/1", bot, 200, "", true},
			{"ci-bot may pull acme's layers", "/v2/up.test/acme/app/blobs/" + e.blobOfApp, bot, 200, "", true},
			{"ci-bot may not pull other/x", "/v2/up.test/other/x/manifests/1", bot, 403, "DENIED", false},
			{"ci-bot may not pull acme's layer through other/x", "/v2/up.test/other/x/blobs/" + e.blobOfApp, bot, 403, "DENIED", false},
			{"ci-bot may not list other/x", "/v2/up.test/other/x/tags/list", bot, 403, "DENIED", false},
			{"admin may pull anything", "/v2/up.test/other/x/manifests/1", admin, 200, "", true},
			// No rule names anonymous: denied either way, with a challenge.
			{"anonymous", "/v2/up.test/acme/app/manifests/1", "", 401, "UNAUTHORIZED", false},
			{"empty Basic credentials are anonymous", "/v2/up.test/acme/app/manifests/1", basicHeader("", ""), 401, "UNAUTHORIZED", false},
		} {
			t.Run(map[bool]string{false: "anonymous false/", true: "anonymous true/"}[anonymous]+tc.name, func(t *testing.T) {
				before := e.upstream.Load()
				r := e.get(t, tc.path, tc.auth)
				if r.status != tc.status || r.code != tc.code {
					t.Fatalf("%d %s (%s), want %d %s", r.status, r.code, r.body, tc.status, tc.code)
				}
				if tc.status == 401 && r.challenge != `Basic realm="portcullis"` {
					t.Fatalf("401 with WWW-Authenticate %q", r.challenge)
				}
				if !tc.upstream && e.upstream.Load() != before {
					t.Fatalf("a refused request reached the upstream")
				}
			})
		}
		logs := e.logs.String()
		for _, secret := range []string{botPassword, adminPassword, bot, admin} {
			if strings.Contains(logs, secret) {
				t.Fatalf("the log holds a password or Authorization header %q", secret)
			}
		}
		for _, want := range []string{`"msg":"access denied","user":"ci-bot","upstream":"up.test","repo":"other/x"`,
			`"msg":"request refused","method":"GET","path":"/v2/up.test/acme/app/manifests/1","status":401,"user":"mallory"`,
			`"user":"ci-bot","aborted":false`} {
			if !strings.Contains(logs, want) {
				t.Errorf("log lacks %s:\n%s", want, logs)
			}
		}
	}
}

// TestAnonymousPulls: with anonymous true and a rule for "anonymous", pulls
// without credentials work where the rule allows, while the ping still
// challenges (so clients holding credentials send them).
func TestAnonymousPulls(t *testing.T) {
	rules := append([]Rule{{Users: []string{Anonymous}, Repositories: []string{"acme/*"}}}, accessRules...)
	for _, tc := range []struct {
		anonymous bool
		path      string
		status    int
	}{
		{true, "/v2/up.test/acme/app/manifests/1", 200},
		{true, "/v2/up.test/other/x/manifests/1", 401},
		{true, "/v2/", 401},
		{false, "/v2/up.test/acme/app/manifests/1", 401}, // anonymous: false wins over the rule
	} {
		e := newAuthEnv(t, tc.anonymous, rules)
		if r := e.get(t, tc.path, ""); r.status != tc.status {
			t.Errorf("anonymous %v: GET %s = %d %s, want %d", tc.anonymous, tc.path, r.status, r.body, tc.status)
		}
	}
	// No rules at all: anonymous true lets everyone pull everything.
	e := newAuthEnv(t, true, nil)
	if r := e.get(t, "/v2/up.test/other/x/manifests/1", ""); r.status != 200 {
		t.Errorf("no rules, anonymous: %d %s", r.status, r.body)
	}
}

func TestAPIRequiresCredentials(t *testing.T) {
	e := newAuthEnv(t, true, nil) // anonymous pulls do not open the API
	for _, tc := range []struct {
		auth   string
		status int
		user   string
	}{
		{"", 401, ""},
		{basicHeader("ci-bot", "wrong"), 401, ""},
		{basicHeader("", ""), 401, ""},
		{basicHeader("ci-bot", botPassword), 200, "ci-bot"},
	} {
		r := e.get(t, "/api/v1/events", tc.auth)
		var body struct{ User, Error, Code, Message string }
		if err := json.Unmarshal([]byte(r.body), &body); err != nil || r.status != tc.status || body.User != tc.user {
			t.Errorf("auth %q: %d %s", tc.auth, r.status, r.body)
		}
		if tc.status == 401 && (r.challenge != Challenge || body.Error == "" || body.Code != "UNAUTHORIZED" || body.Message != body.Error) {
			t.Errorf("401 without challenge or message: %q %s", r.challenge, r.body)
		}
	}
}

// A caller authenticated by other means (an API token) is matched by the
// rules under its name, not as anonymous.
func TestAsUser(t *testing.T) {
	a, err := New(Config{Access: accessRules, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Allow(AsUser(context.Background(), "ci-bot"), "up.test", "acme/app"); err != nil {
		t.Fatalf("ci-bot by name: %v", err)
	}
	if a.User(AsUser(context.Background(), "ci-bot")) != "ci-bot" {
		t.Fatal("the name is not the caller's")
	}
}

// TestAllowWithoutMiddleware: a context the middleware never saw is
// anonymous, so a caller inside Portcullis (Resolve from the API) cannot
// skip the rules.
func TestAllowWithoutMiddleware(t *testing.T) {
	a, err := New(Config{Access: accessRules, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Allow(context.Background(), "up.test", "acme/app")
	var ae *proxy.AccessError
	if err == nil || !errors.As(err, &ae) || ae.Unauthenticated {
		// Without htpasswd nobody can log in: a plain 403, no challenge.
		t.Fatalf("Allow = %v, want a 403 AccessError", err)
	}
	if a.User(context.Background()) != Anonymous {
		t.Fatal("caller without middleware is not anonymous")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	md5 := filepath.Join(dir, "md5")
	if err := os.WriteFile(md5, []byte("u:$apr1$x$y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg Config
		err string
	}{
		{Config{Htpasswd: filepath.Join(dir, "missing")}, "auth.htpasswd: open"},
		{Config{Htpasswd: md5}, "line 1 (user \"u\"): an MD5 (apr1) hash"},
		{Config{Access: []Rule{{Repositories: []string{"a/**b"}}}}, "auth.access[0].repositories"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("New(%+v) = %v, want an error containing %q", tc.cfg, err, tc.err)
		}
	}
}
