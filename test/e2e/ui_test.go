package e2e

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/harness"
)

// noRedirects is a browser that shows redirects instead of following them.
var noRedirects = &http.Client{Timeout: 30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func getNoRedirect(t *testing.T, url string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

// The dashboard is served by serve itself, with the API: on the API
// listener behind its tokens when there is one, showing the verdicts the
// real pulls got.
func TestDashboardOnTheAPIListener(t *testing.T) {
	s := startStatusSetup(t)
	reader, err := os.ReadFile(s.reader)
	if err != nil {
		t.Fatal(err)
	}
	bearer := []string{"Authorization", "Bearer " + strings.TrimSpace(string(reader))}

	if status, _, _ := getNoRedirect(t, s.pc.URL+"/ui/"); status != http.StatusNotFound {
		t.Fatalf("pull port /ui/ with api.listen set: %d, want 404", status)
	}
	status, h, _ := getNoRedirect(t, s.api+"/ui/images")
	if status != http.StatusSeeOther || h.Get("Location") != "/ui/login" {
		t.Fatalf("anonymous /ui/images: %d to %q, want 303 to /ui/login", status, h.Get("Location"))
	}
	if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") || h.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("security headers missing: %v", h)
	}
	if status, _, _ := getNoRedirect(t, s.api+"/ui/events"); status != http.StatusUnauthorized {
		t.Fatalf("anonymous events: %d, want 401", status)
	}
	if status, _, body := getNoRedirect(t, s.api+"/ui/login"); status != http.StatusOK || !strings.Contains(body, `name="token"`) {
		t.Fatalf("login page: %d", status)
	}

	status, _, body := getNoRedirect(t, s.api+"/ui/images?upstream=docker.io", bearer...)
	if status != http.StatusOK {
		t.Fatalf("images with a read token: %d\n%s", status, body)
	}
	for _, want := range []string{
		`data-digest="` + s.alpine + `" data-repository="docker.io/library/alpine"`,
		`data-digest="` + s.alpine + `" data-repository="docker.io/team/alpine"`,
		`class="verdict verdict-block">block<`,
		`class="verdict verdict-warn">warn<`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("images page lacks %s", want)
		}
	}
	status, _, body = getNoRedirect(t, s.api+"/ui/images/"+s.alpine+"?repository=docker.io/library/alpine", bearer...)
	if status != http.StatusOK || !strings.Contains(body, `data-code="VULNERABLE"`) || !strings.Contains(body, "Rule <strong>strict</strong>, mode <strong>enforce</strong>") {
		t.Fatalf("detail page: %d\n%s", status, body)
	}
	status, _, body = getNoRedirect(t, s.api+"/ui/policy?ref=docker.io/team/alpine:3.16.9", bearer...)
	if status != http.StatusOK || !strings.Contains(body, `id="whatif-results"`) || !strings.Contains(body, `data-rule="lenient" class="selected"`) {
		t.Fatalf("what-if: %d\n%s", status, body)
	}
	status, h, _ = getNoRedirect(t, s.api+"/ui/static/ui.css")
	if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/css") {
		t.Fatalf("stylesheet: %d %s", status, h.Get("Content-Type"))
	}
}

// Without api.listen the dashboard is on the pull port, open like the API;
// ui.enabled: false turns it off.
func TestDashboardOnThePullPortAndSwitchedOff(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name, config string
		status       int
	}{
		{"on", "scan: {enabled: false}\n", http.StatusOK},
		{"off", "scan: {enabled: false}\nui: {enabled: false}\n", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, tc.name+".yaml")
			if err := os.WriteFile(cfg, []byte(tc.config), 0o600); err != nil {
				t.Fatal(err)
			}
			pc := harness.StartPortcullis(t, bin, "--config", cfg)
			status, h, body := getNoRedirect(t, pc.URL+"/ui/policy")
			if status != tc.status {
				t.Fatalf("/ui/policy: %d, want %d\n%s", status, tc.status, body)
			}
			if tc.status == http.StatusOK {
				if !strings.Contains(body, "<title>Policy — Portcullis</title>") || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
					t.Fatalf("policy page: %v\n%s", h, body)
				}
				if status, h, _ := getNoRedirect(t, pc.URL+"/ui"); status != http.StatusMovedPermanently || h.Get("Location") != "/ui/" {
					t.Fatalf("/ui: %d to %q", status, h.Get("Location"))
				}
			}
		})
	}
}

// Replicas given the same ui.session_key_file accept each other's
// dashboard sessions: a browser the load balancer sends to another replica
// stays logged in.
func TestDashboardSessionsAcrossReplicas(t *testing.T) {
	bin := harness.BuildPortcullis(t)
	dir := t.TempDir()
	up := startUpstream(t)
	write := func(name, content string) string { return writeFileIn(t, dir, name, content) }
	tokens := write("tokens.yaml", sha([]byte("reader-token-1"))[7:]+": {name: dashboard, scopes: [read]}\n")
	key := write("session.key", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n")
	cfg := write("portcullis.yaml", "default_upstream: docker.io\nupstreams: [{name: docker.io, url: "+up.URL()+"}]\n"+
		"api: {tokens_file: "+tokens+"}\nui: {session_key_file: "+key+"}\n")
	a := harness.StartPortcullis(t, bin, "--config", cfg, "--data", filepath.Join(dir, "a"))
	b := harness.StartPortcullis(t, bin, "--config", cfg, "--data", filepath.Join(dir, "b"))

	// Log in at replica a, as a browser does: the form's CSRF value and
	// its cookie, then the token.
	resp, err := noRedirects.Get(a.URL + "/ui/login")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	_, rest, ok := strings.Cut(string(page), `name="csrf" value="`)
	csrf, _, _ := strings.Cut(rest, `"`)
	if !ok || csrf == "" {
		t.Fatalf("login page without a CSRF value:\n%s", page)
	}
	form := strings.NewReader("csrf=" + csrf + "&token=reader-token-1")
	req, _ := http.NewRequest("POST", a.URL+"/ui/login", form)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range resp.Cookies() {
		req.AddCookie(c)
	}
	resp, err = noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "portcullis_session" && c.Value != "" {
			session = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || session == nil {
		t.Fatalf("login at replica a: %d, session cookie %v", resp.StatusCode, session)
	}
	for _, pc := range []*harness.Portcullis{a, b} {
		req, _ := http.NewRequest("GET", pc.URL+"/ui/", nil)
		req.AddCookie(session)
		resp, err := noRedirects.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s /ui/ with replica a's session: %d (to %q), want 200", pc.URL, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if !b.Logs.Contains(`"session_key":"` + key + `"`) {
		t.Error("the start log does not say where the session key comes from")
	}
}
