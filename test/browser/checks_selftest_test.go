package browser

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// The dashboard's Content-Security-Policy (ui-design.md, contract 2): the
// pages below are held to the same.
const dashboardCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// A page with every fault the checks look for.
const badPage = `<!doctype html><html lang="en"><head><title>Bad — test</title>
<link rel="stylesheet" href="/bad.css"><link rel="stylesheet" href="/missing.css">
<script>console.log("inline, refused by the CSP")</script>
<script src="/bad.js"></script></head>
<body><h1>One</h1><h3>Skipped a level</h3><h1>Two</h1>
<button></button><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="><input name="q"><a href="/x"></a>
<span class="verdict verdict-block">block</span>
<div class="wide">wide</div>
<a href="/elsewhere">first link</a>
<main id="main"><p>text</p></main></body></html>`

const badCSS = `.verdict-block { color: #777; background: #888; }
.wide { width: 600px; }`

const badJS = `console.error("something broke"); document.addEventListener('DOMContentLoaded', () => { throw new Error("boom"); });`

// A page that passes every check in light mode; darkCSS spoils its badge
// contrast only under prefers-color-scheme: dark.
const goodPage = `<!doctype html><html lang="en"><head><title>Good — test</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/good.css"><link rel="stylesheet" href="/COLORS.css"></head>
<body><a href="#main" class="skip">Skip to content</a>
<nav><a href="/ui/">Overview</a></nav>
<main id="main" tabindex="-1"><h1>Good</h1><h2>Section</h2><h3>Sub</h3><h2>Other</h2>
<form><label for="q">Image</label><input id="q" name="q"><input type="hidden" name="csrf" value="x">
<select aria-label="Verdict" name="verdict"><option>allow</option></select><button>Search</button></form>
<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="a dot">
<span class="verdict verdict-allow">allow</span> <span class="verdict verdict-warn">warn</span> <span class="verdict verdict-block">block</span>
<div class="scroller"><table><tr><td class="wide">a wide table scrolls in its own box</td></tr></table></div>
<a href="/next">next</a></main></body></html>`

const goodCSS = `body { background: #fff; color: #111; margin: 0; }
.skip { position: absolute; left: -999px; } .skip:focus { left: 0; }
.verdict { padding: 0 4px; } .verdict-allow { color: #fff; background: #1a6b32; }
.verdict-warn { color: #000; background: #f0b400; } .verdict-block { color: #fff; background: #b00020; }
.scroller { overflow-x: auto; } .wide { display: block; width: 900px; }`

const lightCSS = ``

const darkCSS = `@media (prefers-color-scheme: dark) { body { background: #111; color: #eee; }
.verdict-allow { color: #2a2a2a; background: transparent; } }`

func checksFixture(t *testing.T) *httptest.Server {
	t.Helper()
	files := map[string]struct{ typ, body string }{
		"/bad":       {"text/html", badPage},
		"/bad.css":   {"text/css", badCSS},
		"/bad.js":    {"text/javascript", badJS},
		"/good":      {"text/html", goodPage},
		"/good.css":  {"text/css", goodCSS},
		"/light":     {"text/html", strings.Replace(goodPage, "COLORS", "light", 1)},
		"/light.css": {"text/css", lightCSS},
		"/dark":      {"text/html", strings.Replace(goodPage, "COLORS", "dark", 1)},
		"/dark.css":  {"text/css", darkCSS},
		// main without tabindex: the skip link cannot move focus there.
		"/notabindex": {"text/html", strings.Replace(strings.Replace(goodPage, "COLORS", "light", 1), ` tabindex="-1"`, "", 1)},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", dashboardCSP)
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", f.typ+"; charset=utf-8")
		w.Write([]byte(f.body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// The checks the dashboard tests rely on can fail: each reports the fault
// planted in a page built to be wrong, and nothing on a page built right.
func TestChecksCatchProblems(t *testing.T) {
	srv := checksFixture(t)
	b := startBrowser(t)

	t.Run("console errors, exceptions, CSP violations and failed loads are caught", func(t *testing.T) {
		tb := b.newTab(t)
		tb.open(srv.URL + "/bad")
		tb.settle()
		got := strings.Join(tb.takeProblems(), "\n")
		for _, want := range []string{"something broke", "boom", "Content Security Policy", "missing.css"} {
			if !strings.Contains(got, want) {
				t.Errorf("console problems lack %q:\n%s", want, got)
			}
		}
		tb.open(srv.URL + "/light")
		tb.settle()
		if p := tb.takeProblems(); len(p) != 0 {
			t.Errorf("a clean page reported %q", p)
		}
	})

	t.Run("each check reports the bad page", func(t *testing.T) {
		tb := b.newTab(t)
		tb.open(srv.URL + "/bad")
		want := map[string][]string{
			"names":    {"<button>", "<img", `<input name="q">`, `<a href="/x">`},
			"headings": {"2 h1 elements", "h3 \"Skipped a level\" follows h1"},
			"contrast": {"badge \"block\"", "no .verdict-allow badge"},
		}
		got := map[string][]string{
			"names":    tb.unnamedControls(),
			"headings": tb.headingProblems(),
			"contrast": tb.contrastProblems("allow", "block"),
			"narrow":   tb.narrowProblems(srv.URL + "/bad"),
			"skip":     tb.skipLinkProblems(srv.URL + "/bad"),
		}
		want["narrow"] = []string{"lacks <meta name=viewport", "scrolls sideways"}
		want["skip"] = []string{"not the skip link"}
		got["main without tabindex"] = tb.skipLinkProblems(srv.URL + "/notabindex")
		want["main without tabindex"] = []string{"does not move focus to main#main"}
		for check, wants := range want {
			joined := strings.Join(got[check], "\n")
			for _, w := range wants {
				if !strings.Contains(joined, w) {
					t.Errorf("%s: problems lack %q:\n%s", check, w, joined)
				}
			}
		}
		if n := len(got["names"]); n != 4 {
			t.Errorf("names: %d problems, want the 4 unnamed elements: %q", n, got["names"])
		}
		tb.takeProblems()
	})

	t.Run("the good page passes, and dark mode is measured on its own", func(t *testing.T) {
		tb := b.newTab(t)
		for _, scheme := range []string{"light", "dark"} {
			tb.colorScheme(scheme)
			for _, page := range []string{"/light", "/dark"} {
				tb.open(srv.URL + page)
				problems := append(tb.unnamedControls(), tb.headingProblems()...)
				contrast := tb.contrastProblems("allow", "warn", "block")
				problems = append(problems, tb.narrowProblems(srv.URL+page)...)
				problems = append(problems, tb.skipLinkProblems(srv.URL+page)...)
				if len(problems) != 0 {
					t.Errorf("%s in %s mode: %q", page, scheme, problems)
				}
				spoiled := page == "/dark" && scheme == "dark"
				if spoiled != (len(contrast) != 0) {
					t.Errorf("%s in %s mode: contrast problems %q", page, scheme, contrast)
				}
			}
		}
		tb.colorScheme("light")
		tb.checkConsole("good pages")
	})
}
