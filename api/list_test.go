package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

// testDigest makes the i-th digest of a test.
func testDigest(i int) string { return fmt.Sprintf("sha256:%064x", i+1) }

// verdictStore holds n digests, each decided in up to three repositories,
// every third one vulnerable (i%3 == 2, decided in all three, blocked in
// docker.io's two).
func verdictStore(t testing.TB, n int) (*store.Bolt, int) {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	total := 0
	for i := range n {
		d := testDigest(i)
		scan := store.ScanRecord{Digest: d, State: store.ScanDone, Upstream: "docker.io", Repository: "library/app", Findings: []vulndb.Finding{}}
		if i%3 == 2 {
			scan.Findings = []vulndb.Finding{{ID: "ALPINE-CVE-2023-0001", Upstream: []string{"CVE-2023-0001"}, Severity: vulndb.SeverityHigh, Package: "busybox"}}
		}
		if err := st.PutScan(ctx, &scan); err != nil {
			t.Fatal(err)
		}
		// Written out of order: the list sorts.
		for _, where := range [][2]string{{"ghcr.io", "org/app"}, {"docker.io", "library/app"}, {"docker.io", "team/app"}}[:1+i%3] {
			verdict := policy.Allow
			if i%3 == 2 && where[0] == "docker.io" {
				verdict = policy.Block
			}
			rec := store.DecisionRecord{Digest: d, Upstream: where[0], Repository: where[1], Verdict: string(verdict),
				Decision: &policy.Decision{Verdict: verdict, Effective: verdict, Rule: "r"}}
			if err := st.PutDecision(ctx, &rec); err != nil {
				t.Fatal(err)
			}
			total++
		}
	}
	return st, total
}

func getList(t *testing.T, h *Handler, query string) (imageList, int) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/images?"+query, nil))
	var l imageList
	if w.Code == http.StatusOK {
		if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
	}
	return l, w.Code
}

// walkPages follows next_cursor to the end (bounded) and returns every key seen.
func walkPages(t *testing.T, h *Handler, query string) []string {
	t.Helper()
	var keys []string
	cursor := ""
	for range 1000 {
		q := query
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		l, code := getList(t, h, q)
		if code != http.StatusOK {
			t.Fatalf("page after %q: %d", cursor, code)
		}
		for _, img := range l.Images {
			keys = append(keys, img.Digest+" "+img.Upstream+"/"+img.Repository)
		}
		if l.NextCursor == "" {
			return keys
		}
		cursor = l.NextCursor
	}
	t.Fatal("more than 1000 pages")
	return nil
}

func TestListPagination(t *testing.T) {
	st, total := verdictStore(t, 40)
	h := &Handler{Scans: st}
	all := walkPages(t, h, "limit=1000")
	if len(all) != total {
		t.Fatalf("one page: %d verdicts, want %d", len(all), total)
	}
	for i := 1; i < len(all); i++ {
		if all[i-1] >= all[i] {
			t.Fatalf("not sorted or duplicated at %d: %q then %q", i, all[i-1], all[i])
		}
	}
	for _, limit := range []int{1, 2, 7, 79, 80} {
		t.Run(fmt.Sprint("limit ", limit), func(t *testing.T) {
			got := walkPages(t, h, fmt.Sprintf("limit=%d", limit))
			if fmt.Sprint(got) != fmt.Sprint(all) {
				t.Fatalf("pages of %d differ from one page:\n%v\n%v", limit, got, all)
			}
		})
	}
	// Filters page the same way.
	for _, tc := range []struct {
		query string
		want  int
	}{
		// 40 digests: 14 decided in ghcr.io only, 13 also in
		// docker.io/library, 13 (the vulnerable ones) in docker.io/team too.
		{"verdict=block", 26},
		{"upstream=ghcr.io", 40},
		{"repository=library/*", 26},
		{"vulnerability=CVE-2023-0001", 39}, // matched by its upstream id
		{"vulnerability=alpine-cve-2023-0001&verdict=allow", 13},
		{"min_severity=CRITICAL", 0},
		{"min_severity=HIGH&upstream=docker.io", 26},
	} {
		t.Run(tc.query, func(t *testing.T) {
			one := walkPages(t, h, tc.query+"&limit=1000")
			paged := walkPages(t, h, tc.query+"&limit=3")
			if len(one) != tc.want || fmt.Sprint(one) != fmt.Sprint(paged) {
				t.Fatalf("one page %d (want %d), pages of 3 %d", len(one), tc.want, len(paged))
			}
		})
	}
}

// A filter that matches little costs a bounded walk per request: a short
// page with a cursor, and the walk goes on from there.
func TestListBoundsWorkPerRequest(t *testing.T) {
	st, total := verdictStore(t, 40)
	h := &Handler{Scans: st}
	lq := listQuery{limit: 5, verdict: "warn"} // matches nothing
	examined := 0
	for range 100 {
		l, err := h.listWithBudget(context.Background(), lq, 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Images) != 0 {
			t.Fatalf("%+v", l)
		}
		if l.NextCursor == "" {
			break
		}
		examined += 7
		c, err := decodeCursor(l.NextCursor)
		if err != nil {
			t.Fatal(err)
		}
		lq.cursor = &c
	}
	if examined < total-7 || examined > total {
		t.Fatalf("walked %d of %d verdicts in steps of 7", examined, total)
	}
}

func TestListBadInput(t *testing.T) {
	st, _ := verdictStore(t, 3)
	h := &Handler{Scans: st}
	for _, q := range []string{"cursor=nope", "limit=100000", "verdict=x", "repository=[a"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/images?"+q, nil))
		var e apiError
		if w.Code != http.StatusBadRequest || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Code == "" || e.Message == "" {
			t.Fatalf("%s: %d %s", q, w.Code, w.Body)
		}
		if q == "cursor=nope" && e.Code != "BAD_CURSOR" {
			t.Fatalf("%s: %s", q, w.Body)
		}
	}
}

func TestVulnerabilityLookup(t *testing.T) {
	st, _ := verdictStore(t, 10)
	h := &Handler{Scans: st}
	for _, tc := range []struct {
		id     string
		status int
		images int
	}{
		{"ALPINE-CVE-2023-0001", 200, 3},
		{"cve-2023-0001", 200, 3}, // the upstream id, any case
		{"CVE-1999-0000", 200, 0},
		{"CVE 1", 400, 0},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/vulnerabilities/"+url.PathEscape(tc.id), nil))
		var ans vulnerabilityAnswer
		_ = json.Unmarshal(w.Body.Bytes(), &ans)
		if w.Code != tc.status || len(ans.Images) != tc.images {
			t.Fatalf("%s: %d %s", tc.id, w.Code, w.Body)
		}
		for _, img := range ans.Images {
			verdicts := fmt.Sprint(img.Repositories[0].Verdict, img.Repositories[1].Verdict, img.Repositories[2].Verdict)
			if len(img.Repositories) != 3 || len(img.Findings) != 1 || strings.Count(verdicts, "block") != 2 {
				t.Fatalf("%s: %+v", tc.id, img)
			}
		}
	}
}

// readCounting counts the verdicts the store hands to the list's walk.
type readCounting struct {
	*store.Bolt
	read int
}

func (r *readCounting) Decisions(ctx context.Context, digest string, fn func(store.DecisionRecord) bool) error {
	return r.Bolt.Decisions(ctx, digest, func(d store.DecisionRecord) bool { r.read++; return fn(d) })
}

func (r *readCounting) DecisionsFrom(ctx context.Context, from string, fn func(store.DecisionRecord) bool) error {
	return r.Bolt.DecisionsFrom(ctx, from, func(d store.DecisionRecord) bool { r.read++; return fn(d) })
}

// A deep page starts in the store at its cursor: it reads about as many
// verdicts as the first page, not every verdict before it (it used to walk
// from the first digest and skip up to the cursor).
func TestListDeepPageStartsAtTheCursor(t *testing.T) {
	st, total := verdictStore(t, 300) // 600 verdicts
	counting := &readCounting{Bolt: st}
	h := &Handler{Scans: counting}
	var cursor string
	var pages, worst int
	for range total {
		counting.read = 0
		l, code := getList(t, h, "limit=10&cursor="+cursor)
		if code != 200 {
			t.Fatalf("page %d: %d", pages, code)
		}
		worst = max(worst, counting.read)
		pages++
		if cursor = l.NextCursor; cursor == "" {
			break
		}
	}
	// A page of 10 reads its 10, the rest of its first digest's group
	// (up to 3) and the next digest's group, which tells it there is more.
	if pages != total/10 || worst > 10+2*3 {
		t.Fatalf("%d pages (want %d); the worst page read %d verdicts from the store, want at most 16", pages, total/10, worst)
	}
}

// A distribution record's upstream ids are aliases too: the vulnerability
// answer lists CVE-2023-42366 for ALPINE-CVE-2023-42366.
func TestAliasesOfIncludeUpstreamIDs(t *testing.T) {
	for _, c := range []struct {
		f    vulndb.Finding
		want []string
	}{
		{vulndb.Finding{ID: "ALPINE-CVE-2023-42366", Upstream: []string{"CVE-2023-42366"}}, []string{"CVE-2023-42366"}},
		{vulndb.Finding{ID: "GHSA-x", Aliases: []string{"CVE-1"}, Upstream: []string{"CVE-1", "GHSA-x"}}, []string{"CVE-1"}},
		{vulndb.Finding{ID: "CVE-2"}, nil},
	} {
		if got := aliasesOf(c.f); !slices.Equal(got, c.want) {
			t.Errorf("aliasesOf(%s) = %v, want %v", c.f.ID, got, c.want)
		}
	}
}
