package clientpull

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/bcrypt"

	"github.com/portcullis/portcullis/test/clients"
	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

// The story: a mirror with an htpasswd file and one access rule, "ci-*
// may pull ghcr.io/acme/**". The CI robot logs in with its client and
// pulls; without credentials, or outside acme/, it is refused.
const (
	ciUser     = "ci-bot"
	ciPassword = "Ci-Passw0rd-for-the-mirror"
	authConfig = `
upstreams:
  - {name: ghcr.io, url: UPSTREAM_URL}
default_upstream: ghcr.io
scan: {enabled: false}
auth:
  htpasswd: HTPASSWD
  ACCESS
`
	ciRule = `access:
    - users: ["ci-*"]
      upstreams: [ghcr.io]
      repositories: ["acme/**"]`
)

// authSetup is an upstream named ghcr.io holding acme/app:1, acme/multi:v1
// (two platforms) and other/x:1, behind a portcullis that wants
// credentials.
type authSetup struct {
	p     *harness.Portcullis
	app   v1.Image
	multi v1.ImageIndex
}

func startAuthMirror(t *testing.T, anonymous string, access string) *authSetup {
	t.Helper()
	up := testregistry.Start(t)
	s := &authSetup{
		app:   testregistry.RandomImage(t, 2, 2048, types.OCIManifestSchema1),
		multi: testregistry.MultiArchIndex(t, types.OCIImageIndex, "linux/amd64", "linux/arm64"),
	}
	up.Push(t, "acme/app", "1", s.app)
	up.PushIndex(t, "acme/multi", "v1", s.multi)
	up.Push(t, "other/x", "1", testregistry.RandomImage(t, 1, 1024, types.OCIManifestSchema1))

	hash, err := bcrypt.GenerateFromPassword([]byte(ciPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	// htpasswd -B writes the $2y$ prefix.
	htpasswd := writeFile(t, "htpasswd", ciUser+":$2y"+string(hash[3:])+"\n", 0o600)
	cfg := strings.NewReplacer("UPSTREAM_URL", up.URL(), "HTPASSWD", htpasswd, "ACCESS", access).Replace(authConfig)
	if anonymous != "" {
		cfg += "  anonymous: " + anonymous + "\n"
	}
	s.p = startPortcullis(t, "--config", writeFile(t, "portcullis.yaml", cfg, 0o600))
	t.Cleanup(func() { assertNoSecretLogged(t, s.p) })
	return s
}

// assertNoSecretLogged: neither the password nor the header carrying it
// shows anywhere in portcullis' output.
func assertNoSecretLogged(t *testing.T, p *harness.Portcullis) {
	t.Helper()
	logs := p.Logs.String()
	for _, secret := range []string{ciPassword, base64.StdEncoding.EncodeToString([]byte(ciUser + ":" + ciPassword))} {
		if strings.Contains(logs, secret) {
			t.Errorf("portcullis logged the password (%q)", secret)
		}
	}
}

// authLogLine is a request line with the fields this file checks.
type authLogLine struct {
	Msg, Method, Path, Query, User, Repo string
	Status                               int
}

// requestsByUser returns the request lines for paths containing substr.
func requestsByUser(t *testing.T, p *harness.Portcullis, substr string) []authLogLine {
	t.Helper()
	var out []authLogLine
	sc := bufio.NewScanner(strings.NewReader(p.Logs.String()))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		var l authLogLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "request" && strings.Contains(l.Path, substr) {
			out = append(out, l)
		}
	}
	return out
}

// craneAs runs crane with DOCKER_CONFIG set to dockerConfig, so `crane auth
// login` and the pulls after it share credentials.
func craneAs(ctx context.Context, t *testing.T, dockerConfig string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, clients.Crane(t), args...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+dockerConfig)
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("$ crane %s\n(err=%v)\n%s", strings.Join(args, " "), err, clip(string(out), 8<<10))
	return string(out), err
}

// TestAuthCraneLogin: `crane auth login` then `crane pull` works; without
// login, with a wrong password, or outside the rule's repositories it fails.
func TestAuthCraneLogin(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := startAuthMirror(t, "", ciRule)
	ref := s.p.Addr + "/ghcr.io/acme/app:1"

	anonymous := t.TempDir()
	out, err := craneAs(ctx, t, anonymous, "pull", "--insecure", "--format", "oci", ref, filepath.Join(t.TempDir(), "x"))
	if err == nil || !strings.Contains(out, "401") && !strings.Contains(out, "UNAUTHORIZED") {
		t.Fatalf("crane pulled without logging in (err %v):\n%s", err, out)
	}

	wrong := t.TempDir()
	if out, err := craneAs(ctx, t, wrong, "auth", "login", s.p.Addr, "-u", ciUser, "-p", "not-the-password"); err != nil {
		t.Fatalf("crane auth login: %v\n%s", err, out)
	}
	if out, err := craneAs(ctx, t, wrong, "pull", "--insecure", "--format", "oci", ref, filepath.Join(t.TempDir(), "x")); err == nil || !strings.Contains(out, "401") && !strings.Contains(out, "UNAUTHORIZED") {
		t.Fatalf("crane pulled with a wrong password (err %v):\n%s", err, out)
	}

	loggedIn := t.TempDir()
	if out, err := craneAs(ctx, t, loggedIn, "auth", "login", s.p.Addr, "-u", ciUser, "-p", ciPassword); err != nil {
		t.Fatalf("crane auth login: %v\n%s", err, out)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	if out, err := craneAs(ctx, t, loggedIn, "pull", "--insecure", "--format", "oci", ref, dir); err != nil {
		t.Fatalf("crane pull after login: %v\n%s", err, out)
	}
	root := clients.LayoutRoot(t, dir, "")
	store, b := layoutManifest(t, dir, root)
	assertStoredImage(t, "crane pull after login", store, b, s.app)

	out, err = craneAs(ctx, t, loggedIn, "manifest", "--insecure", s.p.Addr+"/ghcr.io/other/x:1")
	if err == nil || !strings.Contains(out, "DENIED") || !strings.Contains(out, "ci-bot may not pull ghcr.io/other/x") {
		t.Fatalf("ci-bot read ghcr.io/other/x (err %v):\n%s", err, out)
	}

	// Every request carries the user in the log; refused ones say so.
	var sawApp, sawDenied bool
	for _, l := range requestsByUser(t, s.p, "/v2/ghcr.io/") {
		switch {
		case strings.Contains(l.Path, "/acme/app/") && l.Status == 200:
			sawApp = true
			if l.User != ciUser {
				t.Errorf("%s %s logged as user %q, want %s", l.Method, l.Path, l.User, ciUser)
			}
		case strings.Contains(l.Path, "/other/x/"):
			sawDenied = sawDenied || l.Status == http.StatusForbidden && l.User == ciUser
		}
	}
	if !sawApp || !sawDenied {
		t.Errorf("request log lacks ci-bot's pull (%v) or its 403 on other/x (%v)", sawApp, sawDenied)
	}
	if !s.p.Logs.Contains(`"msg":"access denied","user":"ci-bot","upstream":"ghcr.io","repo":"other/x"`) {
		t.Errorf("no access-denied line for ci-bot on other/x")
	}
	if s.p.Logs.Contains("open mirror") {
		t.Errorf("a mirror on 127.0.0.1 warned that it is open")
	}
}

// TestAuthSkopeoSrcCreds: skopeo copy --src-creds works; without
// credentials it is refused.
func TestAuthSkopeoSrcCreds(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := startAuthMirror(t, "false", ciRule)
	src := "docker://" + s.p.Addr + "/ghcr.io/acme/app:1"

	out, err := clients.SkopeoCopy(ctx, t, "--src-tls-verify=false", src, "dir:"+filepath.Join(t.TempDir(), "anon"))
	if err == nil || !strings.Contains(strings.ToLower(out), "unauthorized") && !strings.Contains(out, "401") {
		t.Fatalf("skopeo copied without credentials (err %v):\n%s", err, out)
	}

	dir := filepath.Join(t.TempDir(), "app")
	out, err = clients.SkopeoCopy(ctx, t, "--preserve-digests", "--src-tls-verify=false", "--src-creds", ciUser+":"+ciPassword, src, "dir:"+dir)
	if err != nil {
		t.Fatalf("skopeo copy --src-creds: %v\n%s", err, out)
	}
	assertStoredImage(t, "skopeo --src-creds", skopeoDirStore(dir), readFile(t, filepath.Join(dir, "manifest.json")), s.app)
}

// TestAuthContainerdHeader: containerd sends the credentials configured as
// a header in hosts.toml with every request.
func TestAuthContainerdHeader(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	c := clients.StartContainerd(t)
	s := startAuthMirror(t, "", ciRule)
	hosts := t.TempDir()
	if err := os.MkdirAll(filepath.Join(hosts, "ghcr.io"), 0o755); err != nil {
		t.Fatal(err)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(ciUser+":"+ciPassword))
	toml := fmt.Sprintf(`server = "https://ghcr.io"

[host.%[1]s]
  capabilities = ["pull", "resolve"]
  [host.%[1]s.header]
    Authorization = %[2]s
`, strconv.Quote(s.p.URL), strconv.Quote(basic))
	if err := os.WriteFile(filepath.Join(hosts, "ghcr.io", "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := c.Pull(ctx, t, hosts, "ghcr.io/acme/multi:v1")
	if err != nil {
		t.Fatalf("ctr pull with the header: %v\n%s", err, out)
	}
	idx := digestOf(t, s.multi)
	store := containerdStore(ctx, c)
	b, err := store(idx)
	if err != nil {
		t.Fatal(err)
	}
	assertStoredIndex(t, "containerd", store, b, s.multi, []v1.Hash{childFor(t, s.multi, "linux/amd64")})
	seen := requestsByUser(t, s.p, "/v2/acme/multi/")
	if len(seen) == 0 {
		t.Fatal("portcullis logged no request for acme/multi")
	}
	for _, l := range seen {
		if l.User != ciUser || l.Status != 200 || l.Query != "ns=ghcr.io" {
			t.Errorf("%s %s?%s: %d as user %q; want 200 as %s", l.Method, l.Path, l.Query, l.Status, l.User, ciUser)
		}
	}
}

// TestAuthPodmanLogin: podman login checks the credentials against the
// mirror (a wrong password fails), then pulls with them.
func TestAuthPodmanLogin(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Fatal("podman is not installed (./test/run.sh installs it):", err)
	}
	s := startAuthMirror(t, "", ciRule)
	dir := t.TempDir()
	// podman refuses a runroot path longer than 50 characters.
	run, err := os.MkdirTemp("/tmp", "pm-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(run) })
	policy := writeFile(t, "policy.json", `{"default":[{"type":"insecureAcceptAnything"}]}`, 0o600)
	registries := writeFile(t, "registries.conf", "unqualified-search-registries = []\n", 0o600)
	authFile := filepath.Join(dir, "auth.json")
	podmanRun := func(stdin string, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, clientTimeout)
		defer cancel()
		args = append([]string{"--root", filepath.Join(dir, "root"), "--runroot", run, "--storage-driver", "vfs"}, args...)
		cmd := exec.CommandContext(ctx, podman, args...)
		cmd.Env = append(os.Environ(), "CONTAINERS_REGISTRIES_CONF="+registries, "REGISTRY_AUTH_FILE="+authFile)
		cmd.Stdin = strings.NewReader(stdin)
		cmd.WaitDelay = 2 * time.Second
		out, err := cmd.CombinedOutput()
		t.Logf("$ podman %s\n(err=%v)\n%s", strings.Join(args, " "), err, out)
		return string(out), err
	}
	if out, err := podmanRun("wrong-password\n", "login", "--tls-verify=false", "-u", ciUser, "--password-stdin", s.p.Addr); err == nil {
		t.Fatalf("podman login accepted a wrong password:\n%s", out)
	}
	if out, err := podmanRun(ciPassword+"\n", "login", "--tls-verify=false", "-u", ciUser, "--password-stdin", s.p.Addr); err != nil {
		t.Fatalf("podman login: %v\n%s", err, out)
	}
	ref := s.p.Addr + "/ghcr.io/acme/app:1"
	if out, err := podmanRun("", "pull", "--tls-verify=false", "--signature-policy", policy, ref); err != nil {
		t.Fatalf("podman pull after login: %v\n%s", err, out)
	}
	out, err := podmanRun("", "image", "inspect", "--format", "{{.Digest}}", ref)
	if want := digestOf(t, s.app).String(); err != nil || strings.TrimSpace(out) != want {
		t.Errorf("podman holds %q (%v); want %s", out, err, want)
	}
	if out, err := podmanRun("", "pull", "--tls-verify=false", "--signature-policy", policy, s.p.Addr+"/ghcr.io/other/x:1"); err == nil || !strings.Contains(out, "denied") {
		t.Errorf("podman pulled ghcr.io/other/x as ci-bot (err %v):\n%s", err, out)
	}
}

// TestAuthAnonymousAndAPI: with anonymous true and a rule for the user
// anonymous, pulls without credentials work only where it allows; the
// status API wants credentials whatever anonymous says, and a scan request
// follows the pull rules.
func TestAuthAnonymousAndAPI(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	s := startAuthMirror(t, "true", ciRule+`
    - users: [anonymous]
      repositories: ["acme/app"]`)

	dir := filepath.Join(t.TempDir(), "layout")
	if out, err := craneAs(ctx, t, t.TempDir(), "pull", "--insecure", "--format", "oci", s.p.Addr+"/ghcr.io/acme/app:1", dir); err != nil {
		t.Fatalf("anonymous crane pull of acme/app: %v\n%s", err, out)
	}
	// skopeo (containers/image) answers the ping's challenge with empty
	// Basic credentials when it has none: still anonymous.
	if out, err := clients.SkopeoCopy(ctx, t, "--src-tls-verify=false", "docker://"+s.p.Addr+"/ghcr.io/acme/app:1", "dir:"+filepath.Join(t.TempDir(), "anon")); err != nil {
		t.Fatalf("anonymous skopeo copy of acme/app: %v\n%s", err, out)
	}
	if out, err := craneAs(ctx, t, t.TempDir(), "manifest", "--insecure", s.p.Addr+"/ghcr.io/acme/multi:v1"); err == nil || !strings.Contains(out, "401") && !strings.Contains(out, "UNAUTHORIZED") {
		t.Fatalf("anonymous crane read acme/multi (err %v):\n%s", err, out)
	}

	api := func(method, path string, creds bool) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, s.p.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if creds {
			req.SetBasicAuth(ciUser, ciPassword)
		}
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") != `Basic realm="portcullis"` {
			t.Errorf("%s %s: 401 without the Basic challenge", method, path)
		}
		return resp.StatusCode, b.String()
	}
	digest := "/api/v1/scans/sha256:" + strings.Repeat("a", 64)
	if status, body := api("GET", digest, false); status != 401 {
		t.Errorf("GET %s without credentials: %d %s", digest, status, body)
	}
	if status, body := api("GET", "/api/v1/events", false); status != 401 {
		t.Errorf("event stream without credentials: %d %s", status, body)
	}
	if status, body := api("GET", digest, true); status != 404 {
		t.Errorf("GET %s with credentials: %d %s, want 404 (no scan)", digest, status, body)
	}
	if status, body := api("POST", "/api/v1/scans?image=ghcr.io/other/x:1", true); status != 403 || !strings.Contains(body, "may not pull") {
		t.Errorf("ci-bot's scan request for other/x: %d %s, want 403", status, body)
	}
	if status, body := api("GET", "/healthz", false); status != 200 {
		t.Errorf("/healthz: %d %s", status, body)
	}
	// Metrics are scraped with credentials, like the API.
	if status, body := api("GET", "/metrics", false); status != 401 {
		t.Errorf("/metrics without credentials: %d %s", status, body)
	}
	if status, body := api("GET", "/metrics", true); status != 200 || !strings.Contains(body, "portcullis_requests_total{") {
		t.Errorf("/metrics with credentials: %d %s", status, body)
	}
}
