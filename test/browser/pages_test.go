package browser

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

func testVulnerabilityPage(t *testing.T, b *browser, s *site, shots *screenshots) {
	tb := b.newTab(t)
	for _, id := range []string{alpineVuln, alpineAlias} { // by OSV id and by alias
		tb.visit(s.ui+"/ui/vulnerabilities/"+id, "Vulnerability")
		v := domEval[struct {
			Summary  *string
			Aliases  []string
			Affected []string
			Fixed    []string
		}](tb, `return {summary: txt('#summary'), aliases: qa('#aliases li').map(txt),
			affected: qa('table#affected tr[data-digest]').map(r => r.dataset.digest), fixed: qa('#fixed li').map(txt)};`)
		if v.Summary == nil || *v.Summary == "" {
			t.Errorf("%s: #summary missing or empty", id)
		}
		if !slices.ContainsFunc(v.Aliases, func(a string) bool { return strings.Contains(a, alpineAlias) }) {
			t.Errorf("%s: #aliases %q lack %s", id, v.Aliases, alpineAlias)
		}
		if !slices.Contains(v.Affected, s.alpine) || slices.Contains(v.Affected, s.signed) {
			t.Errorf("%s: table#affected rows %v, want the Alpine image %s only", id, v.Affected, s.alpine)
		}
		if len(v.Fixed) == 0 || slices.Contains(v.Fixed, "") {
			t.Errorf("%s: #fixed %q", id, v.Fixed)
		}
		if id == alpineVuln {
			shots.take(tb, "vulnerability")
		}
	}
}

type whatIfRow struct {
	Rule  string
	Badge *struct{ Text, Class string }
	Text  string
}

func testPolicyPage(t *testing.T, b *browser, s *site, shots *screenshots) {
	tb := b.newTab(t)
	tb.visit(s.ui+"/ui/policy", "Policy")
	p := domEval[struct {
		Rules    map[string]*string
		LoadedAt *string
		WhatIf   bool
	}](tb, `return {rules: Object.fromEntries(qa('table#rules tr[data-rule]').map(r => [r.dataset.rule, txt(r.querySelector('.mode'))])),
		loadedAt: txt('#loaded-at'), whatIf: !!q('form#whatif input[name=ref]')};`)
	want := map[string]string{"strict": "enforce", "lenient": "warn", "signed-only": "enforce", "lax": "enforce"}
	if len(p.Rules) != len(want) {
		t.Errorf("table#rules rows %v, want %v", p.Rules, want)
	}
	for rule, mode := range want {
		if got := p.Rules[rule]; got == nil || *got != mode {
			t.Errorf("rule %s mode %q, want %q", rule, deref(got), mode)
		}
	}
	if p.LoadedAt == nil || *p.LoadedAt == "" {
		t.Error("#loaded-at missing or empty")
	}
	if !p.WhatIf {
		t.Fatal("no form#whatif input[name=ref]")
	}
	shots.take(tb, "policy")

	t.Run("what-if from the form", func(t *testing.T) {
		tb := tb.in(t)
		tb.do(chromedp.SetValue(chromedp.CSS("form#whatif input[name=ref]"), "mirror/alpine:3.16.9"))
		tb.navigateBy(chromedp.Submit(chromedp.CSS("form#whatif")))
		if u := evalIn[string](tb, `location.pathname + location.search`); !strings.HasPrefix(u, "/ui/policy?") || !strings.Contains(u, "ref=") {
			t.Errorf("the what-if form went to %s (want GET /ui/policy?ref=…)", u)
		}
		tb.checkLayout("Policy")
		tb.checkConsole("what-if")
		rows := domEval[[]whatIfRow](tb, `return qa('table#whatif-results tr[data-rule]').map(r => ({rule: r.dataset.rule, badge: badge(r), text: txt(r)}));`)
		got := map[string]whatIfRow{}
		for _, r := range rows {
			got[r.Rule] = r
		}
		// The same stored facts under each rule: the vulnerability blocks
		// under strict, warns under lenient; lax has nothing to object to.
		for rule, verdict := range map[string]string{"strict": "block", "lenient": "warn", "lax": "allow"} {
			r, ok := got[rule]
			if !ok || r.Badge == nil || r.Badge.Text != verdict || !strings.Contains(r.Badge.Class, "verdict-"+verdict) {
				t.Errorf("what-if %s: %+v, want a %s badge", rule, r, verdict)
			}
		}
		if r := got["strict"]; !strings.Contains(r.Text, alpineVuln) {
			t.Errorf("what-if strict row does not give the reason: %q", r.Text)
		}
		shots.take(tb, "policy-whatif")
	})

	t.Run("what-if for an image never scanned", func(t *testing.T) {
		tb := tb.in(t)
		tb.visit(s.ui+"/ui/policy?ref="+url.QueryEscape("mirror/never:1"), "Policy")
		if text := evalIn[string](tb, `document.querySelector('main').textContent`); !strings.Contains(text, "not scanned yet") {
			t.Errorf("what-if for an unknown image says %.300q, want \"not scanned yet\"", text)
		}
	})
}

// testAccessibility checks every page: names, headings, 375 px, the skip
// link, and the verdict badges' contrast in light and dark mode.
func testAccessibility(t *testing.T, b *browser, s *site) {
	tb := b.newTab(t)
	pages := []struct {
		path     string
		verdicts []string // badges that must be on the page to measure
	}{
		{"/ui/", nil},
		{"/ui/images", []string{"allow", "warn", "block"}},
		{"/ui/images?limit=2", nil},
		{detailURL("", s.alpine, "docker.io/library/alpine"), []string{"block"}},
		{detailURL("", s.signed, "docker.io/signed/app"), []string{"allow"}},
		{"/ui/vulnerabilities/" + alpineVuln, nil},
		{"/ui/policy", nil},
		{"/ui/policy?ref=" + url.QueryEscape("team/alpine:3.16.9"), []string{"block", "warn", "allow"}},
	}
	for _, p := range pages {
		u := s.ui + p.path
		tb.open(u)
		for _, problem := range tb.unnamedControls() {
			t.Errorf("%s: %s", p.path, problem)
		}
		for _, problem := range tb.headingProblems() {
			t.Errorf("%s: %s", p.path, problem)
		}
		for _, scheme := range []string{"light", "dark"} {
			tb.colorScheme(scheme)
			tb.open(u)
			for _, problem := range tb.contrastProblems(p.verdicts...) {
				t.Errorf("%s (%s): %s", p.path, scheme, problem)
			}
		}
		tb.colorScheme("light")
		for _, problem := range tb.narrowProblems(u) {
			t.Errorf("%s: %s", p.path, problem)
		}
		for _, problem := range tb.skipLinkProblems(u) {
			t.Errorf("%s: %s", p.path, problem)
		}
		tb.checkConsole(p.path)
	}
}
