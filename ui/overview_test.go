package ui

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/store"
)

// The overview shows the API's figures under the hooks the browser tests
// and the live script use, and a red banner for a missing or stale
// database.
func TestOverviewPage(t *testing.T) {
	r := newRig(t, false)
	built := time.Now().Add(-10 * 24 * time.Hour)
	ov := api.Overview{
		Verdicts:           map[string]int{"allow": 7, "warn": 3, "block": 2, "pending": 1},
		BlockedLast24h:     []api.ReasonCount{{Code: "VULNERABLE", Count: 41}, {Code: "UNSIGNED", Count: 5}},
		TopVulnerabilities: []api.VulnCount{{ID: "CVE-2024-2222", Severity: "CRITICAL", Images: 4}, {ID: `<script>x</script>`, Severity: "HIGH", Images: 1}},
		CacheBytes:         5 << 30, CacheHits: 3, CacheMisses: 1,
		DBVersion: "sha256:abc@2026-11-20T08:00:00Z", DBBuiltAt: built, DBState: "stale",
		RecentChanges: []api.RecentChange{{Digest: digestBlocked, Upstream: "ghcr.io", Repository: "org/api",
			VerdictChange: store.VerdictChange{At: time.Now(), From: "warn", To: "block", Reasons: []string{"VULNERABLE"}}}},
		ComputedAt: time.Now(),
	}
	r.ui.overview = func(context.Context) (api.Overview, error) { return ov, nil }
	for _, tc := range []struct {
		state, banner string
	}{
		{"stale", "vulnerability database stale"},
		{"missing", "vulnerability database missing"},
		{"ok", ""},
	} {
		t.Run(tc.state, func(t *testing.T) {
			ov.DBState = tc.state
			resp := r.get(t, "/ui/")
			if resp.status != 200 {
				t.Fatalf("%d\n%s", resp.status, resp.body)
			}
			d := parseDoc(t, resp.body)
			checkCommon(t, d, "Overview")
			for sel, want := range map[string]string{
				`#verdict-counts [data-verdict=allow] .count`:                    "7",
				`#verdict-counts [data-verdict=warn] .count`:                     "3",
				`#verdict-counts [data-verdict=block] .count`:                    "2",
				`#verdict-counts [data-verdict=pending] .count`:                  "1",
				`#blocked-24h tr[data-reason=VULNERABLE] .count`:                 "41",
				`#blocked-24h tr[data-reason=UNSIGNED] .count`:                   "5",
				`#top-vulnerabilities a[href=/ui/vulnerabilities/CVE-2024-2222]`: "CVE-2024-2222",
				`#cache .size`:      "5.0 GiB",
				`#cache .hit-ratio`: "75.0 %",
				`#db .db-version`:   "sha256:abc",
				`#db .db-age`:       "10 days ago",
				`#recent-changes tr[data-digest=` + digestBlocked + `]`: "ghcr.io/org/api",
			} {
				if got := text(d.one(t, sel)); !strings.Contains(got, want) {
					t.Errorf("%s: %q, want %q", sel, got, want)
				}
			}
			banners := d.find("#db-banner.banner-error")
			switch {
			case tc.banner == "" && len(banners) > 0:
				t.Errorf("banner with a fine database: %q", text(banners[0]))
			case tc.banner != "" && (len(banners) == 0 || !strings.Contains(text(banners[0]), tc.banner)):
				t.Errorf("no banner saying %q", tc.banner)
			}
			// A vulnerability id that is not one gets no link.
			if strings.Contains(resp.body, "<script>x") || len(d.find(`#top-vulnerabilities a[href=/ui/vulnerabilities/<script>x</script>]`)) > 0 {
				t.Error("hostile vulnerability id shown as markup or linked")
			}
		})
	}
}

// An overview that cannot be computed says why, plainly, and shows no
// figures at all rather than made-up ones.
func TestOverviewErrorShownPlainly(t *testing.T) {
	r := newRig(t, false)
	r.ui.overview = func(context.Context) (api.Overview, error) {
		return api.Overview{}, errors.New("overview: not built yet")
	}
	resp := r.get(t, "/ui/")
	d := parseDoc(t, resp.body)
	checkCommon(t, d, "Overview")
	if got := text(d.one(t, ".banner-error")); got != "overview: not built yet" {
		t.Errorf("banner %q", got)
	}
	for _, sel := range []string{"#verdict-counts", "#blocked-24h", "#cache", "#db", "#recent-changes"} {
		if len(d.find(sel)) > 0 {
			t.Errorf("%s shown without figures", sel)
		}
	}
}
