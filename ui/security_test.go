package ui

import (
	"github.com/portcullis/portcullis/api"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/pipeline"
)

func checkSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
		"X-Frame-Options":         "DENY",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "same-origin",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s: %q, want %q", what, k, got, v)
		}
	}
}

// Every response carries the security headers: pages, errors, redirects,
// assets, refusals.
func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	open := newRig(t, false)
	locked := newRig(t, true)
	for _, tc := range []struct {
		r      *rig
		method string
		path   string
		status int
	}{
		{open, "GET", "/ui/", 200},
		{open, "GET", "/ui/images", 200},
		{open, "GET", "/ui/images/" + digestBlocked, 200},
		{open, "GET", "/ui/images?verdict=nonsense", 400},
		{open, "GET", "/ui/images/" + testDigest(50), 404},
		{open, "GET", "/ui/nowhere", 404},
		{open, "DELETE", "/ui/images", 405},
		{open, "GET", "/ui/images/" + digestBlocked + "/scan", 405},
		{open, "POST", "/ui/images/" + digestBlocked + "/scan", 403},
		{open, "GET", "/ui/static/ui.css", 200},
		{open, "GET", "/ui/static/ui.js", 200},
		{open, "GET", "/ui/static/favicon.svg", 200},
		{open, "GET", "/ui/static/missing.css", 404},
		{open, "GET", "/ui/login", 404}, // no tokens: no login
		{open, "GET", "/ui/policy?ref=" + url.QueryEscape("bad ref"), 400},
		{locked, "GET", "/ui/", 303},
		{locked, "GET", "/ui/events", 401},
		{locked, "GET", "/ui/login", 200},
		{locked, "POST", "/ui/login", 403},
		{locked, "GET", "/ui/static/ui.css", 200},
	} {
		resp := tc.r.do(t, tc.method, tc.path, nil, nil)
		what := tc.method + " " + tc.path
		if resp.status != tc.status {
			t.Errorf("%s: status %d, want %d", what, resp.status, tc.status)
		}
		checkSecurityHeaders(t, what, resp.header)
	}
}

// Assets: the right type, revalidated by ETag.
func TestStaticAssets(t *testing.T) {
	r := newRig(t, false)
	for name, mime := range map[string]string{"ui.css": "text/css", "ui.js": "javascript", "favicon.svg": "image/svg+xml"} {
		resp := r.get(t, "/ui/static/"+name)
		etag := resp.header.Get("ETag")
		if !strings.Contains(resp.header.Get("Content-Type"), mime) || resp.header.Get("Cache-Control") != "no-cache" || etag == "" {
			t.Errorf("%s: %v", name, resp.header)
		}
		again := r.do(t, "GET", "/ui/static/"+name, nil, nil, "If-None-Match", etag)
		if again.status != http.StatusNotModified {
			t.Errorf("%s with its ETag: %d, want 304", name, again.status)
		}
	}
}

// No state-changing GET: every route that mutates answers POST only, and
// a GET to it is 405 (so is any method a route does not list).
func TestMutationsArePostOnly(t *testing.T) {
	r := newRig(t, false)
	mutating := 0
	for _, rt := range routeTable {
		if !rt.mutates {
			continue
		}
		mutating++
		if slices.Contains(rt.methods, http.MethodGet) || slices.Contains(rt.methods, http.MethodHead) || !slices.Equal(rt.methods, []string{http.MethodPost}) {
			t.Errorf("route %s changes state but answers %v", rt.pattern, rt.methods)
		}
		path := strings.ReplaceAll(rt.pattern, "{digest}", digestBlocked)
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPut} {
			if resp := r.do(t, m, path, nil, nil); resp.status != http.StatusMethodNotAllowed || resp.header.Get("Allow") != "POST" {
				t.Errorf("%s %s: %d (Allow %q), want 405 (Allow POST)", m, path, resp.status, resp.header.Get("Allow"))
			}
		}
	}
	if mutating < 2 {
		t.Fatalf("%d mutating routes; want the rescan and the logout", mutating)
	}
	if len(r.queue.requests()) != 0 {
		t.Fatalf("a refused request queued a scan: %v", r.queue.requests())
	}
}

// csrfFromPage reads the rescan form's csrf value and the cookies the
// page set.
func csrfFromPage(t *testing.T, resp response) (string, []*http.Cookie) {
	t.Helper()
	d := parseDoc(t, resp.body)
	v, _ := attr(d.one(t, "form#rescan input[name=csrf]"), "value")
	return v, (&http.Response{Header: resp.header}).Cookies()
}

// Without tokens: the re-scan form needs the double-submit CSRF value and
// a client on this machine.
func TestRescanCSRFWithoutTokens(t *testing.T) {
	r := newRig(t, false)
	page := r.get(t, "/ui/images/"+digestBlocked+"?repository=ghcr.io/org/api")
	csrf, cookies := csrfFromPage(t, page)
	if csrf == "" || len(cookies) == 0 {
		t.Fatalf("no CSRF value (%q) or cookie (%v)", csrf, cookies)
	}
	path := "/ui/images/" + digestBlocked + "/scan"
	form := func(csrf string) url.Values { return url.Values{"csrf": {csrf}, "repository": {"ghcr.io/org/api"}} }
	for _, tc := range []struct {
		name    string
		form    url.Values
		cookies []*http.Cookie
	}{
		{"no csrf field", url.Values{"repository": {"ghcr.io/org/api"}}, cookies},
		{"no cookie", form(csrf), nil},
		{"wrong value", form(csrf[:len(csrf)-2] + "AA"), cookies},
		{"value of another cookie", form("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), cookies},
	} {
		if resp := r.do(t, "POST", path, tc.form, tc.cookies); resp.status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tc.name, resp.status)
		}
	}
	if got := r.queue.requests(); len(got) != 0 {
		t.Fatalf("refused posts queued %v", got)
	}
	resp := r.do(t, "POST", path, form(csrf), cookies)
	if resp.status != http.StatusSeeOther || resp.header.Get("Location") != "/ui/images/"+digestBlocked+"?repository=ghcr.io%2Forg%2Fapi" {
		t.Fatalf("valid post: %d to %q", resp.status, resp.header.Get("Location"))
	}
	if got := r.queue.requests(); !slices.Equal(got, []string{"ghcr.io/org/api@" + digestBlocked}) {
		t.Fatalf("queued %v", got)
	}

	// From another machine the same valid form is refused: without tokens
	// only loopback clients change anything.
	req := httptest.NewRequest("POST", path, strings.NewReader(form(csrf).Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range cookies {
		req.AddCookie(c)
	}
	req.RemoteAddr = "192.0.2.10:40000"
	w := httptest.NewRecorder()
	r.ui.ServeHTTP(w, req)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "loopback") {
		t.Fatalf("remote post: %d %s", w.Code, w.Body)
	}
	// ...and a remote visitor sees no rescan form.
	req = httptest.NewRequest("GET", "/ui/images/"+digestBlocked, nil)
	req.RemoteAddr = "192.0.2.10:40000"
	w = httptest.NewRecorder()
	r.ui.ServeHTTP(w, req)
	if w.Code != 200 || strings.Contains(w.Body.String(), `id="rescan"`) {
		t.Fatalf("remote page: %d, rescan form shown: %v", w.Code, strings.Contains(w.Body.String(), `id="rescan"`))
	}
	if got := len(r.queue.requests()); got != 1 {
		t.Fatalf("%d scans queued, want 1", got)
	}
}

// login posts a token and answers the session cookie.
func login(t *testing.T, r *rig, token string) (*http.Cookie, response) {
	t.Helper()
	page := r.get(t, "/ui/login")
	d := parseDoc(t, page.body)
	checkCommon(t, d, "Log in")
	csrf, _ := attr(d.one(t, "form#login input[name=csrf]"), "value")
	cookies := (&http.Response{Header: page.header}).Cookies()
	resp := r.do(t, "POST", "/ui/login", url.Values{"csrf": {csrf}, "token": {token}}, cookies)
	for _, c := range (&http.Response{Header: resp.header}).Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			return c, resp
		}
	}
	return nil, resp
}

func TestLoginAndSessions(t *testing.T) {
	r := newRig(t, true)

	// Not logged in: pages go to the login form, the event stream is 401.
	if resp := r.get(t, "/ui/images"); resp.status != http.StatusSeeOther || resp.header.Get("Location") != "/ui/login" {
		t.Fatalf("anonymous page: %d to %q", resp.status, resp.header.Get("Location"))
	}
	if resp := r.get(t, "/ui/events"); resp.status != http.StatusUnauthorized {
		t.Fatalf("anonymous events: %d", resp.status)
	}

	// A wrong token: no session.
	if c, resp := login(t, r, "not-a-token"); c != nil || resp.status != http.StatusUnauthorized || !strings.Contains(resp.body, "Unknown token") {
		t.Fatalf("wrong token: cookie %v, %d", c, resp.status)
	}
	// The login form is CSRF-checked too.
	if resp := r.do(t, "POST", "/ui/login", url.Values{"token": {readToken}}, nil); resp.status != http.StatusForbidden {
		t.Fatalf("login without csrf: %d", resp.status)
	}

	reader, resp := login(t, r, readToken)
	if reader == nil || resp.status != http.StatusSeeOther || resp.header.Get("Location") != "/ui/" {
		t.Fatalf("read token: cookie %v, %d", reader, resp.status)
	}
	if !reader.HttpOnly || reader.SameSite != http.SameSiteStrictMode || reader.Path != "/ui/" {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/ui/", reader)
	}
	page := r.get(t, "/ui/images/"+digestBlocked, reader)
	if page.status != http.StatusOK {
		t.Fatalf("with a session: %d", page.status)
	}
	d := parseDoc(t, page.body)
	if got := text(d.one(t, "#logout")); !strings.Contains(got, "reader") {
		t.Errorf("logged in as %q", got)
	}
	if len(d.find("form#rescan")) != 0 {
		t.Error("a read token is shown the rescan form")
	}
	logoutCSRF, _ := attr(d.one(t, "form#logout input[name=csrf]"), "value")

	// A read session cannot re-scan, even with a valid CSRF value.
	scan := "/ui/images/" + digestBlocked + "/scan"
	if resp := r.do(t, "POST", scan, url.Values{"csrf": {logoutCSRF}}, []*http.Cookie{reader}); resp.status != http.StatusForbidden || !strings.Contains(resp.body, "admin scope") {
		t.Fatalf("read session rescan: %d", resp.status)
	}

	admin, _ := login(t, r, adminToken)
	d = parseDoc(t, r.get(t, "/ui/images/"+digestBlocked, admin).body)
	adminCSRF, _ := attr(d.one(t, "form#rescan input[name=csrf]"), "value")
	// The reader's CSRF value does not pass for the admin's session.
	if resp := r.do(t, "POST", scan, url.Values{"csrf": {logoutCSRF}}, []*http.Cookie{admin}); resp.status != http.StatusForbidden {
		t.Fatalf("admin session with another session's csrf: %d", resp.status)
	}
	if resp := r.do(t, "POST", scan, url.Values{"csrf": {adminCSRF}}, []*http.Cookie{admin}); resp.status != http.StatusSeeOther {
		t.Fatalf("admin rescan: %d %s", resp.status, resp.body)
	}
	if got := len(r.queue.requests()); got != 1 {
		t.Fatalf("%d scans queued, want 1", got)
	}

	// A tampered cookie (another name, same signature) is no session.
	payload, sig, _ := strings.Cut(admin.Value, ".")
	forged := r.ui.keys.encodeSession(session{Name: "boss", Scopes: []string{"admin"}, Expires: time.Now().Add(time.Hour).Unix(), Token: api.TokenID(adminToken)})
	otherKey, _ := newSessionKeys(nil)
	for name, value := range map[string]string{
		"payload changed":  strings.TrimSuffix(payload, payload[len(payload)-2:]) + "xx." + sig,
		"signature cut":    payload + "." + sig[:10],
		"no signature":     payload,
		"signed elsewhere": otherKey.encodeSession(session{Name: "boss", Scopes: []string{"admin"}, Expires: time.Now().Add(time.Hour).Unix()}),
	} {
		c := &http.Cookie{Name: sessionCookie, Value: value}
		if resp := r.get(t, "/ui/", c); resp.status != http.StatusSeeOther {
			t.Errorf("%s: %d, want 303 to the login", name, resp.status)
		}
	}
	if resp := r.get(t, "/ui/", &http.Cookie{Name: sessionCookie, Value: forged}); resp.status != http.StatusOK {
		t.Fatalf("a cookie signed with the server's key: %d", resp.status)
	}
	// A session lasts only while its token is in the tokens file, with no
	// more scopes than the token has there now.
	revoked := r.ui.keys.encodeSession(session{Name: "gone", Scopes: []string{"read"}, Expires: time.Now().Add(time.Hour).Unix(), Token: api.TokenID("a-token-taken-out")})
	if resp := r.get(t, "/ui/", &http.Cookie{Name: sessionCookie, Value: revoked}); resp.status != http.StatusSeeOther {
		t.Errorf("a session of a token no longer in the file: %d, want 303 to the login", resp.status)
	}
	inflated := r.ui.keys.encodeSession(session{Name: "reader", Scopes: []string{"admin"}, Expires: time.Now().Add(time.Hour).Unix(), Token: api.TokenID(readToken)})
	if d := parseDoc(t, r.get(t, "/ui/images/"+digestBlocked, &http.Cookie{Name: sessionCookie, Value: inflated}).body); len(d.find("form#rescan")) != 0 {
		t.Error("a session claiming admin for a read token is shown the rescan form")
	}

	// Bearer tokens work for scripts; a bad one is 401.
	if resp := r.do(t, "GET", "/ui/policy", nil, nil, "Authorization", "Bearer "+readToken); resp.status != http.StatusOK {
		t.Fatalf("bearer read: %d", resp.status)
	}
	if resp := r.do(t, "GET", "/ui/policy", nil, nil, "Authorization", "Bearer nope"); resp.status != http.StatusUnauthorized {
		t.Fatalf("bad bearer: %d", resp.status)
	}
	if resp := r.do(t, "POST", scan, url.Values{}, nil, "Authorization", "Bearer "+readToken); resp.status != http.StatusForbidden {
		t.Fatalf("bearer read rescan: %d", resp.status)
	}

	// Logging out needs the session's CSRF value, and ends it in the browser.
	if resp := r.do(t, "POST", "/ui/logout", url.Values{"csrf": {"x"}}, []*http.Cookie{reader}); resp.status != http.StatusForbidden {
		t.Fatalf("logout without the csrf value: %d", resp.status)
	}
	resp = r.do(t, "POST", "/ui/logout", url.Values{"csrf": {logoutCSRF}}, []*http.Cookie{reader})
	cleared := false
	for _, c := range (&http.Response{Header: resp.header}).Cookies() {
		cleared = cleared || (c.Name == sessionCookie && c.MaxAge < 0)
	}
	if resp.status != http.StatusSeeOther || !cleared {
		t.Fatalf("logout: %d, cookie cleared %v", resp.status, cleared)
	}

	// Sessions end after 12 hours.
	r.advance(12*time.Hour + time.Second)
	if resp := r.get(t, "/ui/", admin); resp.status != http.StatusSeeOther {
		t.Fatalf("expired session: %d, want 303", resp.status)
	}
	if resp := r.get(t, "/ui/events", admin); resp.status != http.StatusUnauthorized {
		t.Fatalf("expired session events: %d, want 401", resp.status)
	}
}

// The event stream is the API's, behind the pages' authentication.
func TestEventStream(t *testing.T) {
	r := newRig(t, true)
	req, err := http.NewRequest("GET", r.srv.URL+"/ui/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+readToken)
	resp, err := r.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	checkSecurityHeaders(t, "events", resp.Header)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf) // the stream's opening comment
	if !strings.Contains(string(buf[:n]), "portcullis events") {
		t.Fatalf("stream opened with %q", buf[:n])
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.events.publish(pipeline.Event{Type: "verdict", Digest: digestWarned, From: "allow", To: "warn"}) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the stream never subscribed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var got strings.Builder
	for i := 0; i < 20 && !strings.Contains(got.String(), "\n\n"); i++ {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if !strings.Contains(got.String(), "event: verdict") || !strings.Contains(got.String(), digestWarned) {
		t.Fatalf("stream sent %q", got.String())
	}
}

// Without tokens, the API's htpasswd check (Protect) guards every page and
// the event stream, but not the assets; its refusals carry the headers too.
func TestProtectGuardsThePagesWithoutTokens(t *testing.T) {
	r := newRig(t, false)
	guarded, err := New(Options{API: r.api, Policy: r.pl, Protect: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if user, pass, ok := req.BasicAuth(); !ok || user != "alice" || pass != "secret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="portcullis"`)
				http.Error(w, "credentials required", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, req)
		})
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, user string
		status     int
	}{
		{"/ui/", "", http.StatusUnauthorized},
		{"/ui/images", "", http.StatusUnauthorized},
		{"/ui/events", "", http.StatusUnauthorized},
		{"/ui/static/ui.css", "", http.StatusOK},
		{"/ui/images", "alice", http.StatusOK},
		{"/ui/policy", "alice", http.StatusOK},
	} {
		req := httptest.NewRequest("GET", tc.path, nil)
		if tc.user != "" {
			req.SetBasicAuth(tc.user, "secret")
		}
		w := httptest.NewRecorder()
		guarded.ServeHTTP(w, req)
		if w.Code != tc.status {
			t.Errorf("%s as %q: %d, want %d", tc.path, tc.user, w.Code, tc.status)
		}
		checkSecurityHeaders(t, tc.path, w.Header())
	}
}
