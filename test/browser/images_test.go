package browser

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

type imageRow struct {
	Digest, Repository string
	Badge              *struct{ Text, Class string }
}

type imagesPage struct {
	Rows        []imageRow
	Next        *string // a.next's absolute URL
	ResultCount *string
	Path        string
	Text        string // the main content's text
}

func readImages(tb *tab) imagesPage {
	tb.t.Helper()
	return domEval[imagesPage](tb, `return {
		rows: qa('table#images tr[data-digest]').map(r => ({digest: r.dataset.digest, repository: r.dataset.repository, badge: badge(r)})),
		next: q('a.next') ? q('a.next').href : null, resultCount: txt('#result-count'),
		path: location.pathname + location.search, text: txt('main') || ''};`)
}

// key names a row: digest and upstream/repository.
func (r imageRow) key() string { return r.Digest + " " + r.Repository }

// checkRows compares a page's rows with want (key → verdict), order aside,
// and checks each row's badge says its verdict.
func checkRows(t *testing.T, where string, p imagesPage, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, r := range p.Rows {
		if r.Badge == nil {
			t.Errorf("%s: row %s has no verdict badge", where, r.key())
			continue
		}
		if classes := strings.Fields(r.Badge.Class); !slices.Contains(classes, "verdict") || !slices.Contains(classes, "verdict-"+r.Badge.Text) {
			t.Errorf("%s: row %s badge %q has class %q", where, r.key(), r.Badge.Text, r.Badge.Class)
		}
		got[r.key()] = r.Badge.Text
	}
	if len(got) != len(want) || len(p.Rows) != len(want) {
		t.Errorf("%s: rows %v, want %v", where, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: row %s verdict %q, want %q (rows %v)", where, k, got[k], v, got)
		}
	}
}

func testImagesList(t *testing.T, b *browser, s *site, shots *screenshots) {
	all := map[string]string{
		s.alpine + " docker.io/library/alpine": "block",
		s.alpine + " docker.io/team/alpine":    "warn",
		s.alpine + " docker.io/mirror/alpine":  "allow",
		s.signed + " docker.io/signed/app":     "allow",
		s.unsigned + " docker.io/signed/app":   "block",
	}
	pick := func(keys ...string) map[string]string {
		m := map[string]string{}
		for _, k := range keys {
			m[k] = all[k]
		}
		return m
	}
	tb := b.newTab(t)
	tb.visit(s.ui+"/ui/images", "Images")
	p := readImages(tb)
	checkRows(t, "/ui/images", p, all)
	if p.Next != nil {
		t.Errorf("a.next on a list that fits one page: %s", *p.Next)
	}
	if p.ResultCount == nil || !strings.Contains(*p.ResultCount, "5") {
		t.Errorf("#result-count %q, want the 5 rows counted", deref(p.ResultCount))
	}
	shots.take(tb, "images")

	t.Run("filters in the query", func(t *testing.T) {
		tb := tb.in(t)
		for _, tc := range []struct {
			query string
			want  map[string]string
		}{
			{"verdict=block", pick(s.alpine+" docker.io/library/alpine", s.unsigned+" docker.io/signed/app")},
			{"verdict=warn", pick(s.alpine + " docker.io/team/alpine")},
			{"repository=signed/*", pick(s.signed+" docker.io/signed/app", s.unsigned+" docker.io/signed/app")},
			{"signed=yes", pick(s.signed + " docker.io/signed/app")},
			{"signed=no&verdict=block", pick(s.alpine+" docker.io/library/alpine", s.unsigned+" docker.io/signed/app")},
			{"vulnerability=" + alpineAlias, pick(s.alpine+" docker.io/library/alpine", s.alpine+" docker.io/team/alpine", s.alpine+" docker.io/mirror/alpine")},
			{"upstream=docker.io&verdict=allow", pick(s.alpine+" docker.io/mirror/alpine", s.signed+" docker.io/signed/app")},
		} {
			tb.visit(s.ui+"/ui/images?"+tc.query, "Images")
			checkRows(t, tc.query, readImages(tb), tc.want)
		}
	})

	t.Run("filters from the form", func(t *testing.T) {
		tb := tb.in(t)
		tb.visit(s.ui+"/ui/images", "Images")
		set := evalIn[string](tb, `(() => { const f = document.querySelector('form#filters'); if (!f) return 'no form#filters';
			const v = f.querySelector('[name=verdict]'), r = f.querySelector('[name=repository]');
			if (!v || !r) return 'form#filters lacks verdict or repository';
			v.value = 'block'; r.value = 'library/*';
			return v.value === 'block' && r.value === 'library/*' ? '' : 'the form refused the values'; })()`)
		if set != "" {
			t.Fatal(set)
		}
		tb.navigateBy(chromedp.Evaluate[chromedp.Void](`document.querySelector('form#filters').requestSubmit()`))
		p := readImages(tb)
		u, err := url.Parse(p.Path)
		if err != nil || u.Path != "/ui/images" || u.Query().Get("verdict") != "block" || u.Query().Get("repository") != "library/*" {
			t.Errorf("the filter form went to %q", p.Path)
		}
		checkRows(t, "form verdict=block repository=library/*", p, pick(s.alpine+" docker.io/library/alpine"))
		tb.checkLayout("Images")
		tb.checkConsole("filtered list")
	})

	t.Run("pagination", func(t *testing.T) {
		tb := tb.in(t)
		tb.visit(s.ui+"/ui/images?limit=2", "Images")
		seen := map[string]string{}
		pages := 0
		for ; pages < 10; pages++ {
			p := readImages(tb)
			if len(p.Rows) > 2 {
				t.Fatalf("page %d of limit=2 has %d rows", pages+1, len(p.Rows))
			}
			for _, r := range p.Rows {
				if _, dup := seen[r.key()]; dup {
					t.Errorf("row %s on two pages", r.key())
				}
				if r.Badge != nil {
					seen[r.key()] = r.Badge.Text
				}
			}
			if p.Next == nil {
				break
			}
			if !strings.Contains(*p.Next, "limit=2") || !strings.Contains(*p.Next, "cursor=") {
				t.Errorf("a.next %q does not keep limit=2 and carry a cursor", *p.Next)
			}
			tb.navigateBy(chromedp.Click(chromedp.CSS("a.next")))
			tb.checkLayout("Images")
			tb.checkConsole("page " + p.Path)
		}
		if pages < 2 || len(seen) != len(all) {
			t.Errorf("%d pages of limit=2 showed %v; want all %d rows on at least 3 pages", pages+1, seen, len(all))
		}
		for k, v := range all {
			if seen[k] != v {
				t.Errorf("paged row %s: %q, want %q", k, seen[k], v)
			}
		}
	})

	t.Run("recently evaluated first", func(t *testing.T) {
		tb := tb.in(t)
		// The JSON API's newest-first order, with each verdict's time: the
		// pages must show the same rows in the same order.
		var list struct {
			Images []struct {
				Digest, Upstream, Repository string
				EvaluatedAt                  time.Time `json:"evaluated_at"`
			}
		}
		getJSON(t, s.ui+"/api/v1/images?sort=recent&limit=1000", &list)
		var want []string
		for i, img := range list.Images {
			if i > 0 && img.EvaluatedAt.After(list.Images[i-1].EvaluatedAt) {
				t.Errorf("the API's sort=recent lists %s (%v) after an older verdict (%v)", img.Digest, img.EvaluatedAt, list.Images[i-1].EvaluatedAt)
			}
			want = append(want, img.Digest+" "+img.Upstream+"/"+img.Repository)
		}
		if len(want) != len(all) {
			t.Fatalf("the API's sort=recent lists %d verdicts, want %d: %v", len(want), len(all), want)
		}
		// Chosen in the form: a changed select submits it (ui.js).
		tb.visit(s.ui+"/ui/images?limit=2", "Images")
		tb.navigateBy(chromedp.SetValue(chromedp.CSS("form#filters select[name=sort]"), "recent"))
		var got []string
		seen := map[string]string{}
		pages := 0
		for ; pages < 10; pages++ {
			p := readImages(tb)
			if u, err := url.Parse(p.Path); err != nil || u.Query().Get("sort") != "recent" || u.Query().Get("limit") != "2" {
				t.Fatalf("page %d is %q, want sort=recent&limit=2 kept", pages+1, p.Path)
			}
			if len(p.Rows) > 2 {
				t.Fatalf("page %d of limit=2 has %d rows", pages+1, len(p.Rows))
			}
			for _, r := range p.Rows {
				if _, dup := seen[r.key()]; dup {
					t.Errorf("row %s on two pages", r.key())
				}
				got = append(got, r.key())
				if r.Badge != nil {
					seen[r.key()] = r.Badge.Text
				}
			}
			if p.Next == nil {
				break
			}
			tb.navigateBy(chromedp.Click(chromedp.CSS("a.next")))
			tb.checkLayout("Images")
			tb.checkConsole("sort=recent page " + p.Path)
		}
		if pages < 2 || !slices.Equal(got, want) {
			t.Errorf("%d pages of sort=recent&limit=2 showed\n%v\nwant, newest first,\n%v", pages+1, got, want)
		}
		for k, v := range all {
			if seen[k] != v {
				t.Errorf("sort=recent row %s: %q, want %q", k, seen[k], v)
			}
		}
	})

	t.Run("a bad filter is a clear page, not a crash", func(t *testing.T) {
		tb := tb.in(t)
		status := tb.open(s.ui + "/ui/images?verdict=maybe")
		if status != 400 && status != 200 {
			t.Errorf("verdict=maybe: status %d, want a page that explains (400)", status)
		}
		if p := readImages(tb); !strings.Contains(p.Text, "maybe") {
			t.Errorf("verdict=maybe: the page does not say what was wrong: %.300q", p.Text)
		}
		tb.checkLayout("Images")
		tb.takeProblems() // the 400 itself is logged by chromium as a failed load
	})

	t.Run("search box", func(t *testing.T) {
		tb := tb.in(t)
		tb.visit(s.ui+"/ui/images", "Images")
		tb.do(chromedp.SetValue(chromedp.CSS("form#search input[name=ref]"), "team/alpine:3.16.9"))
		tb.navigateBy(chromedp.Submit(chromedp.CSS("form#search")))
		d := readDetail(tb)
		if d.Path != "/ui/images/"+s.alpine || d.Query["repository"] != "docker.io/team/alpine" || d.Verdict == nil || d.Verdict.Text != "warn" {
			t.Errorf("search team/alpine:3.16.9 led to %s %v, verdict %+v", d.Path, d.Query, d.Verdict)
		}
		tb.checkConsole("search")

		tb.visit(s.ui+"/ui/images", "Images")
		tb.do(chromedp.SetValue(chromedp.CSS("form#search input[name=ref]"), "library/missing:1"))
		tb.navigateBy(chromedp.Submit(chromedp.CSS("form#search")))
		if p := readImages(tb); !strings.HasPrefix(p.Path, "/ui/images") || !strings.Contains(p.Text, "library/missing:1") {
			t.Errorf("search for an unknown image: %s says %.300q", p.Path, p.Text)
		}
		tb.checkLayout("Images")
		tb.takeProblems() // an unknown image may answer 404
	})
}

type detailPage struct {
	Path      string
	Query     map[string]string
	Verdict   *struct{ Text, Class string }
	Reasons   []struct{ Code, Text string }
	Rule      *string
	Signature *string
	Facts     *string
	Findings  []struct{ ID, Advisory string }
	History   int
	Links     map[string]*string
	Verify    *string
	Rescan    bool
}

func readDetail(tb *tab) detailPage {
	tb.t.Helper()
	return domEval[detailPage](tb, `const v = q('#verdict');
	return {path: location.pathname, query: Object.fromEntries(new URLSearchParams(location.search)),
		verdict: v ? (v.matches('.verdict') ? {text: txt(v), class: v.className} : badge(v)) : null,
		reasons: qa('#reasons li[data-code]').map(l => ({code: l.dataset.code, text: txt(l)})),
		rule: txt('#rule'), signature: txt('#signature'), facts: txt('#facts'),
		findings: qa('table#findings tr[data-id]').map(r => ({id: r.dataset.id, advisory: (r.querySelector('a.advisory') || {}).href || ''})),
		history: qa('#history li').length,
		links: Object.fromEntries(['sbom-cyclonedx', 'sbom-spdx', 'sarif'].map(id => [id, q('a#' + id) ? q('a#' + id).href : null])),
		verify: txt('code#verify-command'), rescan: !!q('form#rescan')};`)
}

// apiReasons returns the reason messages the JSON API gives for digest in
// repository: the page must show the same.
func apiReasons(t *testing.T, s *site, repository, digest string) []string {
	t.Helper()
	var st struct {
		Verdict string
		Reasons []struct{ Code, Message string }
	}
	getJSON(t, s.ui+"/api/v1/images?ref="+url.QueryEscape(repository+"@"+digest), &st)
	var out []string
	for _, r := range st.Reasons {
		out = append(out, r.Code+": "+r.Message)
	}
	return out
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != 200 || json.Unmarshal(body, v) != nil {
		t.Fatalf("GET %s: %d %.300s", u, resp.StatusCode, body)
	}
}

func status(t *testing.T, u string) int {
	t.Helper()
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func testImageDetail(t *testing.T, b *browser, s *site, shots *screenshots) {
	tb := b.newTab(t)
	for _, tc := range []struct {
		name, digest, repository string
		verdict, rule, mode      string
		codes                    []string
		signature                string // what #signature says (lower case)
		findings                 bool
	}{
		{"blocked", s.alpine, "docker.io/library/alpine", "block", "strict", "enforce", []string{"VULNERABLE"}, "", true},
		{"warned", s.alpine, "docker.io/team/alpine", "warn", "lenient", "warn", []string{"VULNERABLE"}, "", true},
		{"allowed", s.alpine, "docker.io/mirror/alpine", "allow", "lax", "enforce", nil, "", true},
		{"signed", s.signed, "docker.io/signed/app", "allow", "signed-only", "enforce", nil, "verified", false},
		{"unsigned", s.unsigned, "docker.io/signed/app", "block", "signed-only", "enforce", []string{"UNSIGNED"}, "unsigned", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := tb.in(t)
			tb.visit(detailURL(s.ui, tc.digest, tc.repository), "Image")
			d := readDetail(tb)
			if d.Verdict == nil || d.Verdict.Text != tc.verdict || !strings.Contains(d.Verdict.Class, "verdict-"+tc.verdict) {
				t.Errorf("#verdict %+v, want %s", d.Verdict, tc.verdict)
			}
			var codes []string
			for _, r := range d.Reasons {
				codes = append(codes, r.Code)
			}
			if !slices.Equal(codes, tc.codes) {
				t.Errorf("#reasons codes %v, want %v", codes, tc.codes)
			}
			for i, want := range apiReasons(t, s, tc.repository, tc.digest) {
				code, msg, _ := strings.Cut(want, ": ")
				if i >= len(d.Reasons) || d.Reasons[i].Code != code || !strings.Contains(d.Reasons[i].Text, msg) {
					t.Errorf("reason %d: page %+v, the API says %q", i, d.Reasons, want)
				}
			}
			if rule := deref(d.Rule); !strings.Contains(rule, tc.rule) || !strings.Contains(rule, tc.mode) {
				t.Errorf("#rule %q, want rule %s in mode %s", rule, tc.rule, tc.mode)
			}
			if sig := strings.ToLower(deref(d.Signature)); d.Signature == nil || !strings.Contains(sig, tc.signature) {
				t.Errorf("#signature %q, want it to say %q", sig, tc.signature)
			}
			if d.Facts == nil || *d.Facts == "" {
				t.Error("#facts missing or empty")
			}
			hasVuln := false
			for _, f := range d.Findings {
				if f.ID == alpineVuln {
					hasVuln = true
					if f.Advisory != "https://osv.dev/vulnerability/"+alpineVuln {
						t.Errorf("finding %s links %q", f.ID, f.Advisory)
					}
				}
			}
			if hasVuln != tc.findings {
				t.Errorf("table#findings rows %+v; want %s listed: %v", d.Findings, alpineVuln, tc.findings)
			}
			if d.History < 1 {
				t.Error("#history has no entry")
			}
			for id, href := range d.Links {
				if href == nil || !strings.Contains(*href, "/api/v1/scans/"+tc.digest) {
					t.Errorf("a#%s href %q", id, deref(href))
				} else if code := status(t, *href); code != 200 {
					t.Errorf("a#%s %s answers %d", id, *href, code)
				}
			}
			if v := deref(d.Verify); !strings.HasPrefix(v, "cosign verify-attestation ") || !strings.Contains(v, tc.digest) {
				t.Errorf("code#verify-command %q", v)
			}
			if tc.name == "blocked" {
				shots.take(tb, "image-detail")
			}
		})
	}
}
