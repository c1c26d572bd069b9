package browser

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/harness"
	"github.com/portcullis/portcullis/test/testregistry"
)

const (
	readerToken = "reader-token-for-the-browser"
	adminToken  = "admin-token-for-the-browser"
)

// startTokenSite starts portcullis with api.listen and api.tokens_file and
// no vulnerability database, with one image pulled.
func startTokenSite(t *testing.T) (s *site, digest string) {
	t.Helper()
	bin := harness.BuildPortcullis(t)
	dir := t.TempDir()
	up := testregistry.Start(t)
	digest = up.Push(t, "mirror/tiny", "1", testregistry.RandomImage(t, 1, 256, types.OCIManifestSchema1)).String()
	tokens := writeFile(t, dir, "tokens.yaml", sha256Hex(readerToken)+": {name: viewer, scopes: [read]}\n"+
		sha256Hex(adminToken)+": {name: ops, scopes: [read, admin]}\n")
	policy := writeFile(t, dir, "policy.yaml", "rules:\n  - name: lax\n    match: {upstreams: [docker.io]}\n    on_unscanned: {wait: 30s, then: block}\n")
	apiAddr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	cfg := writeFile(t, dir, "portcullis.yaml", "default_upstream: docker.io\nupstreams: [{name: docker.io, url: "+up.URL()+"}]\npolicy: "+policy+
		"\napi: {listen: "+apiAddr+", tokens_file: "+tokens+"}\n")
	s = &site{up: up, ui: "http://" + apiAddr}
	s.pc = harness.StartPortcullis(t, bin, "--config", cfg, "--data", filepath.Join(dir, "data"))
	s.pullHost = strings.TrimPrefix(s.pc.URL, "http://")
	s.pull(t, "mirror/tiny:1", true) // warned: no database, but allowed
	return s, digest
}

// logIn pastes token into the login form and submits it.
func (tb *tab) logIn(token string) {
	tb.t.Helper()
	tb.do(chromedp.SetValue(chromedp.CSS("form input[name=token]"), token))
	tb.navigateBy(chromedp.Submit(chromedp.CSS("form input[name=token]")))
}

func (tb *tab) path() string {
	tb.t.Helper()
	return evalIn[string](tb, `location.pathname`)
}

func sessionCookie(cookies []*network.Cookie) *network.Cookie {
	for _, c := range cookies {
		if c.Name == "portcullis_session" {
			return c
		}
	}
	return nil
}

// noRedirect is a client that shows redirects instead of following them.
var noRedirect = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func testLogin(t *testing.T, b *browser, shots *screenshots) {
	s, digest := startTokenSite(t)
	detail := detailURL(s.ui, digest, "docker.io/mirror/tiny")

	t.Run("without a session: pages redirect to the login, the stream is refused", func(t *testing.T) {
		for path, want := range map[string]int{"/ui/": 303, "/ui/images": 303, "/ui/events": 401} {
			resp, err := noRedirect.Get(s.ui + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want || want == 303 && !strings.HasSuffix(resp.Header.Get("Location"), "/ui/login") {
				t.Errorf("GET %s: %d to %q, want %d", path, resp.StatusCode, resp.Header.Get("Location"), want)
			}
		}
	})

	tb := b.newTab(t)
	t.Run("a wrong token is refused", func(t *testing.T) {
		tb := tb.in(t)
		tb.open(s.ui + "/ui/")
		if p := tb.path(); p != "/ui/login" {
			t.Fatalf("/ui/ without a session shows %s, want /ui/login", p)
		}
		if title := evalIn[string](tb, `document.title`); !strings.HasPrefix(title, "Log in") {
			t.Errorf("login page title %q", title)
		}
		tb.checkConsole("login page")
		shots.take(tb, "login")
		tb.logIn("not-a-token")
		if p := tb.path(); p != "/ui/login" {
			t.Errorf("a wrong token led to %s", p)
		}
		if c := sessionCookie(tb.cookies(s.ui + "/ui/")); c != nil {
			t.Errorf("a wrong token got a session cookie %+v", c)
		}
		tb.takeProblems() // the refusal is a 401, which chromium logs
	})

	t.Run("a read token: a session cookie, the pages, no rescan form", func(t *testing.T) {
		tb := tb.in(t)
		tb.open(s.ui + "/ui/login")
		tb.logIn(readerToken)
		if p := tb.path(); p != "/ui/" {
			t.Fatalf("after login: %s, want /ui/", p)
		}
		tb.checkLayout("Overview")
		tb.checkConsole("overview after login")
		c := sessionCookie(tb.cookies(s.ui + "/ui/"))
		if c == nil || !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict || c.Path != "/ui/" {
			t.Fatalf("session cookie %+v; want HttpOnly, SameSite=Strict, Path=/ui/", c)
		}
		if evalIn[bool](tb, `document.cookie.includes('portcullis_session')`) {
			t.Error("the page's script can read the session cookie")
		}
		o := readOverview(tb)
		if !o.BannerError || !strings.Contains(deref(o.Banner), "vulnerability database missing") {
			t.Errorf("no database: #db-banner.banner-error %v says %q", o.BannerError, deref(o.Banner))
		}
		tb.visit(detail, "Image")
		if readDetail(tb).Rescan {
			t.Error("a read-only session is offered form#rescan")
		}
		// A POST without the form's CSRF field is refused, session or not.
		req, _ := http.NewRequest("POST", s.ui+"/ui/images/"+digest+"/scan", strings.NewReader(""))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		if resp, err := noRedirect.Do(req); err != nil || resp.StatusCode != 403 {
			t.Errorf("POST rescan without csrf: %v %v, want 403", resp, err)
		} else {
			resp.Body.Close()
		}
	})

	t.Run("logout ends the session", func(t *testing.T) {
		tb := tb.in(t)
		tb.open(s.ui + "/ui/")
		tb.navigateBy(chromedp.Submit(chromedp.CSS(`form[action="/ui/logout"]`)))
		if p := tb.path(); p != "/ui/login" {
			t.Errorf("after logout: %s", p)
		}
		tb.open(s.ui + "/ui/images")
		if p := tb.path(); p != "/ui/login" {
			t.Errorf("after logout /ui/images shows %s", p)
		}
		tb.checkConsole("logout")
	})

	t.Run("an admin token: the rescan form posts and comes back", func(t *testing.T) {
		tb := tb.in(t)
		tb.open(s.ui + "/ui/login")
		tb.logIn(adminToken)
		tb.visit(detail, "Image")
		if !readDetail(tb).Rescan {
			t.Fatal("an admin session has no form#rescan")
		}
		if code := tb.navigateBy(chromedp.Submit(chromedp.CSS("form#rescan"))); code != 200 {
			t.Errorf("rescan: status %d", code)
		}
		if p := tb.path(); p != "/ui/images/"+digest {
			t.Errorf("rescan led to %s, want the detail page", p)
		}
		tb.checkLayout("Image")
		tb.checkConsole("rescan")
	})
}
