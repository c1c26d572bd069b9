package ui

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/controls"
	"github.com/portcullis/portcullis/store"
)

func TestPages(t *testing.T) {
	r := newRig(t, false)
	esc := url.QueryEscape
	for _, tc := range []struct {
		name   string
		path   string
		status int
		title  string
		// want: selector → text it must contain ("" only: present)
		want   map[string]string
		absent []string
	}{
		// The API's own overview (its figures: TestOverviewPage).
		{"overview", "/ui/", 200, "Overview", nil, nil},
		{"images", "/ui/images", 200, "Images", map[string]string{
			"form#filters select[name=verdict]": "", "form#filters input[name=upstream]": "", "form#filters input[name=repository]": "",
			"form#filters select[name=severity]": "", "form#filters input[name=vulnerability]": "", "form#filters select[name=signed]": "",
			"form#filters select[name=sort]": "", "form#filters input[name=limit]": "",
			"#result-count": "6 verdicts",
			"table#images tr[data-digest=" + digestAllowed + "][data-repository=docker.io/library/app] .verdict.verdict-allow": "allow",
			"table#images tr[data-digest=" + digestWarned + "][data-repository=docker.io/library/web] .verdict.verdict-warn":   "warn",
			"table#images tr[data-digest=" + digestBlocked + "][data-repository=ghcr.io/org/api] .verdict.verdict-block":       "block",
			"table#images tr[data-digest=" + digestPending + "][data-repository=quay.io/team/tool] .verdict.verdict-pending":   "pending",
			"table#images tr[data-digest=" + digestBlocked + "] .top-severity":                                                 "CRITICAL",
			"table#images tr[data-digest=" + digestBlocked + "] .findings":                                                     "1 CRITICAL, 1 HIGH",
			"table#images tr[data-digest=" + digestBlocked + "] .signer":                                                       "unsigned",
			"table#images tr[data-digest=" + digestAllowed + "] .signer":                                                       "SHA256:signer-key",
			"table#images tr[data-digest=" + digestAllowed + "] .top-severity":                                                 "none",
			"table#images tr[data-digest=" + digestPending + "] .findings":                                                     "not scanned",
			"table#images tr[data-digest=" + digestBlocked + "] .platform":                                                     "linux/arm64/v8",
			"table#images tr[data-digest=" + digestBlocked + "] .tags":                                                         "3.0, stable",
			"table#images tr[data-digest=" + digestPending + "] .platform":                                                     "—",
			"table#images tr[data-digest=" + digestWarned + "]":                                                                "3.0 MiB",
		}, []string{"a.next"}},
		{"images filtered by verdict", "/ui/images?verdict=block", 200, "Images", map[string]string{
			"#result-count": "1 verdicts", "table#images tr[data-digest=" + digestBlocked + "]": "ghcr.io/org/api:3.0",
			"select[name=verdict] option[value=block][selected]": "",
		}, []string{"tr[data-digest=" + digestAllowed + "]"}},
		{"images filtered by signature", "/ui/images?signed=yes", 200, "Images", map[string]string{
			"table#images tr[data-digest=" + digestAllowed + "]": "library/app",
		}, []string{"tr[data-digest=" + digestBlocked + "]"}},
		{"images filtered by vulnerability alias and severity", "/ui/images?vulnerability=GHSA-aaaa-bbbb-cccc&severity=HIGH", 200, "Images", map[string]string{
			"table#images tr[data-digest=" + digestWarned + "] a[href=/ui/vulnerabilities/CVE-2024-1111]": "CVE-2024-1111",
		}, []string{"tr[data-digest=" + digestAllowed + "]"}},
		{"images recently evaluated first", "/ui/images?sort=recent", 200, "Images", map[string]string{
			"#result-count": "6 verdicts", "select[name=sort] option[value=recent][selected]": "recently evaluated first",
			"table#images tr[data-digest=" + digestBlocked + "][data-repository=ghcr.io/org/api] .verdict.verdict-block": "block",
		}, []string{"a.next"}},
		{"images: a cursor of the other sort is refused", "/ui/images?sort=recent&cursor=" + esc(digestOrderCursor), 400, "Images",
			map[string]string{".banner-error": "another sort order"}, nil},
		{"images: a sort the store cannot do is refused", "/ui/images?sort=size", 400, "Images",
			map[string]string{".banner-error": "digest order"}, nil},
		{"images: a bad filter is refused with the API's message", "/ui/images?verdict=maybe", 400, "Images",
			map[string]string{".banner-error": "want allow, warn, block or pending"}, nil},
		{"images: a bad cursor is refused", "/ui/images?cursor=garbage", 400, "Images",
			map[string]string{".banner-error": "invalid cursor"}, nil},
		{"search: an image never pulled", "/ui/images?ref=" + esc("ghcr.io/org/api:new"), 200, "Images",
			map[string]string{".banner-info": "has not judged ghcr.io/org/api:new"}, nil},
		{"search: an unknown image", "/ui/images?ref=" + esc("docker.io/library/nope:1"), 200, "Images",
			map[string]string{".banner-info": "Unknown image"}, nil},
		{"detail of a blocked image", "/ui/images/" + digestBlocked + "?repository=ghcr.io/org/api", 200, "Image", map[string]string{
			"#verdict .verdict.verdict-block":   "block",
			"#reasons li[data-code=UNSIGNED]":   "no signature by a trusted key",
			"#reasons li[data-code=VULNERABLE]": "1 CRITICAL vulnerability (CVE-2024-2222 in openssl 3.0.1)",
			"#rule":                             "Rule signed-only, mode enforce",
			"#signature":                        "no signature was found",
			"#tags":                             "3.0, stable",
			"#facts":                            "3.0 MiB",
			"table#findings tr[data-id=CVE-2024-2222] a.advisory[href=https://osv.dev/vulnerability/CVE-2024-2222]": "advisory",
			"table#findings tr[data-id=CVE-2024-2222]":                                                              "3.0.1 → 3.1.0 CRITICAL sha256:1a1a1a1a1a1a",
			"table#findings tr[data-id=CVE-2024-1111]":                                                              "HIGH",
			"#history li": "block",
			"a#sbom-cyclonedx[href=/api/v1/scans/" + digestBlocked + "/sbom?format=cyclonedx]": "",
			"a#sbom-spdx[href=/api/v1/scans/" + digestBlocked + "/sbom?format=spdx]":           "",
			"a#sarif[href=/api/v1/scans/" + digestBlocked + "/report?format=sarif]":            "",
			"code#verify-command":                       "cosign verify-attestation --key portcullis.pub --insecure-ignore-tlog --type https://portcullis.dev/attestation/verdict/v1 mirror.example/ghcr.io/org/api@" + digestBlocked,
			"form#rescan[method=post] input[name=csrf]": "",
		}, nil},
		{"detail of a signed image", "/ui/images/" + digestAllowed, 200, "Image", map[string]string{
			"#verdict .verdict-allow": "allow", "#signature": "verified — signed by: key SHA256:signer-key",
			"#reasons li": "No reasons", "table#findings": "No vulnerabilities found",
		}, nil},
		{"detail of an image being scanned", "/ui/images/" + digestPending, 200, "Image", map[string]string{
			"#verdict .verdict-pending": "pending", "table#findings": "Not scanned yet",
		}, nil},
		{"detail of an unknown digest", "/ui/images/" + testDigest(77), 404, "Not found", map[string]string{".banner-error": "No scan of"}, nil},
		{"detail of something not a digest", "/ui/images/latest", 400, "Bad Request", map[string]string{".banner-error": "invalid digest"}, nil},
		{"vulnerability", "/ui/vulnerabilities/CVE-2024-1111", 200, "Vulnerability", map[string]string{
			"#summary": "openssl reads past a buffer", "#aliases li": "GHSA-aaaa-bbbb-cccc", "#fixed li": "openssl 3.0.9",
			"table#affected tr[data-digest=" + digestWarned + "]":  "docker.io/library/web warn",
			"table#affected tr[data-digest=" + digestBlocked + "]": "ghcr.io/org/api block",
		}, nil},
		{"vulnerability with a bad id", "/ui/vulnerabilities/" + url.PathEscape("<x>"), 400, "Bad Request",
			map[string]string{".banner-error": "invalid vulnerability id"}, nil},
		{"policy", "/ui/policy", 200, "Policy", map[string]string{
			"table#rules tr[data-rule=apps] .mode": "enforce", "table#rules tr[data-rule=signed-only]": "ghcr.io",
			"#loaded-at": "UTC", "form#whatif input[name=ref]": "",
		}, []string{"#whatif-results"}},
		{"policy what-if", "/ui/policy?ref=" + esc("docker.io/library/web:2.1"), 200, "Policy", map[string]string{
			"table#whatif-results tr[data-rule=apps] .verdict.verdict-warn":    "warn",
			"table#whatif-results tr[data-rule=apps] li[data-code=VULNERABLE]": "HIGH",
			"table#whatif-results tr[data-rule=apps]":                          "applies here",
			"table#whatif-results tr[data-rule=signed-only] .verdict":          "",
		}, nil},
		{"policy what-if of an image never scanned", "/ui/policy?ref=" + esc("ghcr.io/org/api:new"), 200, "Policy",
			map[string]string{".banner-info": "not scanned yet; pull it or queue a scan"}, []string{"#whatif-results"}},
		{"policy what-if of an image nobody has", "/ui/policy?ref=" + esc("docker.io/library/nope:1"), 200, "Policy",
			map[string]string{".banner-info": "docker.io/library/nope:1 is not scanned yet; pull it or queue a scan"}, []string{"#whatif-results"}},
		{"policy what-if of a bad reference", "/ui/policy?ref=" + esc("no spaces allowed"), 400, "Policy",
			map[string]string{".banner-error": "Cannot evaluate"}, []string{"#whatif-results"}},
		{"no such page", "/ui/nothing", 404, "No such page", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := r.get(t, tc.path)
			if resp.status != tc.status {
				t.Fatalf("status %d, want %d\n%s", resp.status, tc.status, resp.body)
			}
			d := parseDoc(t, resp.body)
			checkCommon(t, d, tc.title)
			for selector, want := range tc.want {
				got := text(d.one(t, selector))
				if !strings.Contains(got, want) {
					t.Errorf("%s: %q, want it to contain %q", selector, got, want)
				}
			}
			for _, selector := range tc.absent {
				if len(d.find(selector)) > 0 {
					t.Errorf("%s is on the page", selector)
				}
			}
		})
	}
}

// The search box takes an image reference to its detail page.
func TestSearchRedirectsToTheImage(t *testing.T) {
	r := newRig(t, false)
	resp := r.get(t, "/ui/images?ref="+url.QueryEscape("docker.io/library/app:1.0"))
	want := "/ui/images/" + digestAllowed + "?repository=docker.io%2Flibrary%2Fapp"
	if resp.status != http.StatusSeeOther || resp.header.Get("Location") != want {
		t.Fatalf("%d to %q, want 303 to %q", resp.status, resp.header.Get("Location"), want)
	}
}

// Pages follow the store's pagination: every verdict once, the last page
// without a next link.
func TestImagesPagination(t *testing.T) {
	r := newRig(t, false)
	seen := map[string]bool{}
	path := "/ui/images?limit=2&upstream=docker.io"
	for page := 0; ; page++ {
		if page == 10 {
			t.Fatal("more than 10 pages of 2")
		}
		resp := r.get(t, path)
		if resp.status != http.StatusOK {
			t.Fatalf("page %d: %d", page, resp.status)
		}
		d := parseDoc(t, resp.body)
		for _, tr := range d.find("table#images tr[data-digest]") {
			dg, _ := attr(tr, "data-digest")
			repo, _ := attr(tr, "data-repository")
			if !strings.HasPrefix(repo, "docker.io/") {
				t.Errorf("filtered by upstream docker.io, got %s", repo)
			}
			if seen[dg+repo] {
				t.Errorf("%s %s listed twice", dg, repo)
			}
			seen[dg+repo] = true
		}
		next := d.find("a.next")
		if len(next) == 0 {
			break
		}
		href, _ := attr(next[0], "href")
		if !strings.Contains(href, "upstream=docker.io") || !strings.Contains(href, "limit=2") {
			t.Errorf("next link %q lost the filters", href)
		}
		path = href
	}
	if len(seen) != 4 { // allowed, warned, hostile, long
		t.Fatalf("%d docker.io verdicts across the pages, want 4", len(seen))
	}
}

// Hostile repository names, tags, reason and advisory text are shown as
// text: never markup, never a javascript: link, never 10 KB long.
func TestHostileTextIsEscaped(t *testing.T) {
	r := newRig(t, false)
	pages := []string{
		"/ui/images",
		"/ui/images/" + digestHostile,
		"/ui/images/" + digestHostile + "?repository=" + url.QueryEscape("docker.io/"+hostileRepo),
		"/ui/images/" + digestLong,
		"/ui/vulnerabilities/" + hostileID,
		"/ui/images?repository=" + url.QueryEscape(`<script>alert(1)</script>`),
		"/ui/policy?ref=" + url.QueryEscape(`"><script>alert(1)</script>`),
	}
	for _, path := range pages {
		t.Run(path[:min(len(path), 40)], func(t *testing.T) {
			resp := r.get(t, path)
			if resp.status >= 500 {
				t.Fatalf("status %d", resp.status)
			}
			// (Escaped, the same text is harmless: "onerror=" as text is
			// no attribute; checkCommon checks the attributes.)
			for _, bad := range []string{"<script>alert", "<img src=x", `href="javascript:`} {
				if strings.Contains(strings.ToLower(resp.body), strings.ToLower(bad)) {
					t.Errorf("page contains %q unescaped", bad)
				}
			}
			if strings.Contains(resp.body, strings.Repeat("x", 1000)) || strings.Contains(resp.body, strings.Repeat("t", 1000)) {
				t.Error("a 10 KB name is shown whole")
			}
			d := parseDoc(t, resp.body)
			checkCommon(t, d, "")
			for _, a := range d.find("a.advisory") {
				if href, _ := attr(a, "href"); !strings.HasPrefix(href, "https://osv.dev/vulnerability/") {
					t.Errorf("advisory link %q", href)
				}
			}
		})
	}
	// The hostile text is there, as text.
	d := parseDoc(t, r.get(t, "/ui/images/"+digestHostile).body)
	if got := text(d.one(t, "#reasons li[data-code=VULNERABLE]")); !strings.Contains(got, `<script>alert("reason")</script>`) {
		t.Errorf("reason shown as %q", got)
	}
	if got := text(d.one(t, "table#findings")); !strings.Contains(got, hostileSummary[:40]) {
		t.Errorf("advisory summary shown as %q", got)
	}
	if got := text(d.one(t, "p.subtitle")); !strings.Contains(got, hostileRepo) || !strings.Contains(got, hostileTag) {
		t.Errorf("repository and tag shown as %q", got)
	}
}

// digestOrderCursor is a next-page cursor of the digest order (base64url
// of its JSON), as a browser holds it.
var digestOrderCursor = base64.RawURLEncoding.EncodeToString([]byte(`{"d":"` + digestAllowed + `","w":"docker.io/library/app"}`))

// sort=recent lists the newest verdicts first, and its next links keep
// the order and visit every verdict once.
func TestImagesRecentlyEvaluatedFirst(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	// Evaluated again, one after the other: the last is the newest.
	order := []string{digestAllowed, digestLong, digestPending, digestBlocked, digestHostile, digestWarned}
	at := time.Now().Add(-time.Hour)
	var want []string
	for i, dg := range order {
		var dec store.DecisionRecord
		if err := r.st.Decisions(ctx, dg, func(d store.DecisionRecord) bool { dec = d; return false }); err != nil || dec.Digest == "" {
			t.Fatalf("verdict on %s: %+v, %v", dg, dec, err)
		}
		dec.UpdatedAt = at.Add(time.Duration(i) * time.Minute)
		if err := r.st.PutDecision(ctx, &dec); err != nil {
			t.Fatal(err)
		}
		want = append([]string{dg}, want...)
	}
	var got []string
	path := "/ui/images?sort=recent&limit=4"
	for page := 0; ; page++ {
		if page == 10 {
			t.Fatal("more than 10 pages of 4")
		}
		resp := r.get(t, path)
		if resp.status != http.StatusOK {
			t.Fatalf("page %d: %d\n%s", page, resp.status, resp.body)
		}
		d := parseDoc(t, resp.body)
		for _, tr := range d.find("table#images tr[data-digest]") {
			dg, _ := attr(tr, "data-digest")
			got = append(got, dg)
		}
		next := d.find("a.next")
		if len(next) == 0 {
			break
		}
		href, _ := attr(next[0], "href")
		if !strings.Contains(href, "sort=recent") || !strings.Contains(href, "limit=4") {
			t.Errorf("next link %q lost the sort", href)
		}
		path = href
	}
	if !slices.Equal(got, want) {
		t.Fatalf("sort=recent listed\n%v\nwant newest first\n%v", got, want)
	}
}

// An operator's quarantine or exception shows in the images list: the
// effective verdict, and the control that made it, with the policy's own.
func TestImagesListShowsControls(t *testing.T) {
	r := newRig(t, false)
	ctx := context.Background()
	if err := r.st.PutQuarantine(ctx, store.Quarantine{Digest: digestAllowed, Reason: "incident 12", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	view := controls.New(r.st, controls.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := view.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	r.api.Controls = view
	resp := r.get(t, "/ui/images")
	if resp.status != http.StatusOK {
		t.Fatalf("%d %s", resp.status, resp.body)
	}
	d := parseDoc(t, resp.body)
	row := "table#images tr[data-digest=" + digestAllowed + "][data-repository=docker.io/library/app]"
	if got := text(d.one(t, row+" .verdict")); got != "block" {
		t.Errorf("verdict of the quarantined image: %q, want block", got)
	}
	n := d.one(t, row+" .control")
	if title, _ := attr(n, "title"); text(n) != "quarantine" || !strings.Contains(title, "allow") {
		t.Errorf("control marker %q, title %q", text(n), title)
	}
}
