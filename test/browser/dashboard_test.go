package browser

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/portcullis/portcullis/test/testregistry"
)

// domHelpers are small functions every page script below starts with.
const domHelpers = `const q = s => document.querySelector(s), qa = s => [...document.querySelectorAll(s)].slice(0, 1000);
const txt = s => { const e = typeof s === 'string' ? q(s) : s; return e ? e.textContent.replace(/\s+/g, ' ').trim() : null; };
const badge = e => { const b = e && e.querySelector('.verdict'); return b ? {text: txt(b), class: b.className} : null; };
`

// domEval runs body (a function body with the helpers above in scope that
// returns a value) in the page.
func domEval[T any](tb *tab, body string) T {
	tb.t.Helper()
	return evalIn[T](tb, "(() => {"+domHelpers+body+"})()")
}

// layout is what every page has (ui-design.md, contract 3).
type layout struct {
	Title, Path string
	H1          int
	Main, Skip  bool
	MissingNav  []string
}

// visit opens url, expects the page called name (its <title> starts with
// it) with status 200 and the common layout, and no console errors.
func (tb *tab) visit(url, name string) {
	tb.t.Helper()
	if status := tb.open(url); status != 200 {
		tb.t.Errorf("%s: status %d", url, status)
	}
	tb.checkLayout(name)
	tb.checkConsole(url)
}

func (tb *tab) checkLayout(name string) {
	tb.t.Helper()
	l := domEval[layout](tb, `return {title: document.title, path: location.pathname, h1: qa('h1').length,
		main: !!q('main#main'), skip: !!q('a.skip[href="#main"]'),
		missingNav: ['/ui/', '/ui/images', '/ui/policy'].filter(h => !q('nav a[href="' + h + '"]'))};`)
	if !strings.HasPrefix(l.Title, name+" ") || !strings.Contains(l.Title, "Portcullis") {
		tb.t.Errorf("%s: title %q, want %q", l.Path, l.Title, name+" — Portcullis")
	}
	if l.H1 != 1 || !l.Main || !l.Skip || len(l.MissingNav) > 0 {
		tb.t.Errorf("%s: %d h1, main#main %v, skip link %v, nav lacks %v", l.Path, l.H1, l.Main, l.Skip, l.MissingNav)
	}
}

// number reads the first integer in s ("1,234 images" → 1234); -1 when
// there is none.
func number(s string) int {
	m := regexp.MustCompile(`\d[\d,]*`).FindString(s)
	if m == "" {
		return -1
	}
	n, err := strconv.Atoi(strings.ReplaceAll(m, ",", ""))
	if err != nil {
		return -1
	}
	return n
}

type overviewState struct {
	Counts      map[string]*string
	Blocked     map[string]string
	Top         []string
	CacheSize   *string
	HitRatio    *string
	DBVersion   *string
	DBAge       *string
	Banner      *string
	BannerError bool
	Recent      []string
}

func readOverview(tb *tab) overviewState {
	tb.t.Helper()
	return domEval[overviewState](tb, `const counts = {};
	for (const v of ['allow', 'warn', 'block', 'pending']) counts[v] = txt('#verdict-counts [data-verdict="' + v + '"] .count');
	return {counts,
		blocked: Object.fromEntries(qa('#blocked-24h tr[data-reason]').map(r => [r.dataset.reason, txt(r.querySelector('.count'))])),
		top: qa('#top-vulnerabilities a[href^="/ui/vulnerabilities/"]').map(a => a.getAttribute('href')),
		cacheSize: txt('#cache .size'), hitRatio: txt('#cache .hit-ratio'),
		dbVersion: txt('#db .db-version'), dbAge: txt('#db .db-age'),
		banner: txt('#db-banner'), bannerError: !!q('#db-banner.banner-error'),
		recent: qa('#recent-changes tr[data-digest]').map(r => r.dataset.digest)};`)
}

func deref(s *string) string {
	if s == nil {
		return "(missing)"
	}
	return *s
}

// TestDashboard drives every page in chromium against portcullis with the
// pulls of contract 5 behind it.
func TestDashboard(t *testing.T) {
	s := startSite(t)
	b := startBrowser(t)
	shots := newScreenshots(t)

	t.Run("overview", func(t *testing.T) {
		tb := b.newTab(t)
		tb.visit(s.ui+"/ui/", "Overview")
		o := readOverview(tb)
		// One verdict per (digest, repository): mirror/alpine and the signed
		// image allowed, team/alpine warned, library/alpine and the unsigned
		// image blocked.
		for v, want := range map[string]int{"allow": 2, "warn": 1, "block": 2, "pending": 0} {
			if got := o.Counts[v]; got == nil || number(*got) != want {
				t.Errorf("#verdict-counts %s: %q, want %d", v, deref(got), want)
			}
		}
		for _, code := range []string{"VULNERABLE", "UNSIGNED"} {
			if n := number(o.Blocked[code]); n < 1 {
				t.Errorf("#blocked-24h: reason %s counts %q, want at least 1 (rows %v)", code, o.Blocked[code], o.Blocked)
			}
		}
		if !containsSuffix(o.Top, "/ui/vulnerabilities/"+alpineVuln) && !containsSuffix(o.Top, "/ui/vulnerabilities/"+alpineAlias) {
			t.Errorf("#top-vulnerabilities links %v, want one to %s", o.Top, alpineVuln)
		}
		if o.CacheSize == nil || *o.CacheSize == "" || o.HitRatio == nil || *o.HitRatio == "" {
			t.Errorf("#cache: size %q, hit ratio %q", deref(o.CacheSize), deref(o.HitRatio))
		}
		if o.DBVersion == nil || *o.DBVersion == "" || o.DBAge == nil || *o.DBAge == "" {
			t.Errorf("#db: version %q, age %q", deref(o.DBVersion), deref(o.DBAge))
		}
		if o.Banner != nil {
			t.Errorf("a database banner with a fresh database: %q", *o.Banner)
		}
		for _, d := range []string{s.alpine, s.signed, s.unsigned} {
			if !slices.Contains(o.Recent, d) {
				t.Errorf("#recent-changes lacks %s: %v", d, o.Recent)
			}
		}
		shots.take(tb, "overview")
	})

	t.Run("images list", func(t *testing.T) { testImagesList(t, b, s, shots) })
	t.Run("image detail", func(t *testing.T) { testImageDetail(t, b, s, shots) })
	t.Run("vulnerability", func(t *testing.T) { testVulnerabilityPage(t, b, s, shots) })
	t.Run("policy and what-if", func(t *testing.T) { testPolicyPage(t, b, s, shots) })
	t.Run("accessibility", func(t *testing.T) { testAccessibility(t, b, s) })

	// Last: it adds a verdict the tests above do not expect.
	t.Run("the overview updates live on a new pull", func(t *testing.T) {
		tb := b.newTab(t)
		tb.visit(s.ui+"/ui/", "Overview")
		if !tb.waitFor(`document.body.dataset.live === 'on'`, 15*time.Second) {
			t.Fatal("body[data-live=on] never set: the overview did not open its event stream")
		}
		before := number(deref(readOverview(tb).Counts["allow"]))
		evalIn[bool](tb, `(window.portcullisTestMarker = true)`) // gone if the page reloads
		digest := s.up.Push(t, "mirror/new", "1", testregistry.RandomImage(t, 1, 256, types.OCIManifestSchema1)).String()
		s.pull(t, "mirror/new:1", true)
		if !tb.waitFor(`!!document.querySelector('#recent-changes tr[data-digest="`+digest+`"]')`, 30*time.Second) {
			t.Errorf("#recent-changes never showed %s: %v", digest, readOverview(tb).Recent)
		}
		want := fmt.Sprint(before + 1)
		if !tb.waitFor(`(document.querySelector('#verdict-counts [data-verdict="allow"] .count') || {}).textContent.replace(/\D/g, '') === '`+want+`'`, 30*time.Second) {
			t.Errorf("allow count %q after the pull, want %s", deref(readOverview(tb).Counts["allow"]), want)
		}
		if !evalIn[bool](tb, `window.portcullisTestMarker === true`) {
			t.Error("the overview reloaded instead of updating in place")
		}
		tb.checkConsole("live overview")
	})

	t.Run("login with api.tokens_file", func(t *testing.T) { testLogin(t, b, shots) })
}

func containsSuffix(list []string, suffix string) bool {
	for _, x := range list {
		if strings.HasSuffix(x, suffix) {
			return true
		}
	}
	return false
}

// detailURL is the detail page of digest as judged in repository
// (upstream/repository).
func detailURL(base, digest, repository string) string {
	return base + "/ui/images/" + digest + "?repository=" + url.QueryEscape(repository)
}
