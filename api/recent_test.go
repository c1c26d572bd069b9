package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/store"
)

// recentStore is verdictStore with a time on every verdict: spread over
// the list out of digest order, a third of them sharing an instant with
// another. It returns the keys newest first.
func recentStore(t *testing.T, n int) (*store.Bolt, []string) {
	t.Helper()
	ctx := context.Background()
	st, _ := verdictStore(t, n)
	var recs []store.DecisionRecord
	if err := st.Decisions(ctx, "", func(d store.DecisionRecord) bool { recs = append(recs, d); return true }); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	for i := range recs {
		recs[i].UpdatedAt = base.Add(time.Duration((i*7)%len(recs)/3*3) * time.Second)
		if err := st.PutDecision(ctx, &recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	slices.SortFunc(recs, func(a, b store.DecisionRecord) int {
		if c := b.UpdatedAt.Compare(a.UpdatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Digest+"\x00"+a.Upstream+"/"+a.Repository, b.Digest+"\x00"+b.Upstream+"/"+b.Repository)
	})
	keys := make([]string, len(recs))
	for i, d := range recs {
		keys[i] = d.Digest + " " + d.Upstream + "/" + d.Repository
	}
	return st, keys
}

func TestListRecent(t *testing.T) {
	st, want := recentStore(t, 40)
	h := &Handler{Scans: st}
	all := walkPages(t, h, "sort=recent&limit=1000")
	if !slices.Equal(all, want) {
		t.Fatalf("newest first:\n got %v\nwant %v", all, want)
	}
	for _, limit := range []int{1, 2, 7, 79, 80} {
		if got := walkPages(t, h, fmt.Sprintf("sort=recent&limit=%d", limit)); !slices.Equal(got, want) {
			t.Fatalf("pages of %d differ from one page:\n%v\n%v", limit, got, want)
		}
	}
	// Filters apply as in digest order: the same verdicts, in the other
	// order.
	for _, q := range []string{"verdict=block", "upstream=ghcr.io", "repository=library/*", "vulnerability=CVE-2023-0001",
		"vulnerability=alpine-cve-2023-0001&verdict=allow", "min_severity=CRITICAL", "min_severity=HIGH&upstream=docker.io", "signed=yes", "signed=no"} {
		t.Run(q, func(t *testing.T) {
			byDigest := walkPages(t, h, q+"&limit=1000")
			one := walkPages(t, h, q+"&sort=recent&limit=1000")
			paged := walkPages(t, h, q+"&sort=recent&limit=3")
			if !slices.Equal(one, paged) {
				t.Fatalf("one page %v, pages of 3 %v", one, paged)
			}
			ordered := slices.DeleteFunc(slices.Clone(want), func(k string) bool { return !slices.Contains(byDigest, k) })
			if !slices.Equal(one, ordered) {
				t.Fatalf("sort=recent lists %v, want the digest order's %d verdicts newest first: %v", one, len(byDigest), ordered)
			}
		})
	}
}

// A sort that matches little costs the same bounded walk per request as
// the digest order.
func TestListRecentBoundsWorkPerRequest(t *testing.T) {
	st, want := recentStore(t, 40)
	h := &Handler{Scans: st}
	lq := listQuery{limit: 5, verdict: "warn", sort: sortRecent} // matches nothing
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
		c, err := decodeRecentCursor(l.NextCursor)
		if err != nil {
			t.Fatal(err)
		}
		lq.recent = &c
	}
	if examined < len(want)-7 || examined > len(want) {
		t.Fatalf("walked %d of %d verdicts in steps of 7", examined, len(want))
	}
}

// A cursor works only with the sort it was made for; the cursors of
// earlier versions still work in digest order.
func TestListCursorsKeepToTheirSort(t *testing.T) {
	st, _ := recentStore(t, 10)
	h := &Handler{Scans: st}
	byDigest, _ := getList(t, h, "limit=2")
	recent, _ := getList(t, h, "limit=2&sort=recent")
	old := base64.RawURLEncoding.EncodeToString([]byte(`{"d":"` + testDigest(3) + `","w":"ghcr.io/org/app"}`))
	for _, tc := range []struct {
		query string
		code  int
		says  string
	}{
		{"sort=recent&cursor=" + byDigest.NextCursor, 400, "BAD_CURSOR"},
		{"sort=digest&cursor=" + recent.NextCursor, 400, "BAD_CURSOR"},
		{"cursor=" + recent.NextCursor, 400, "BAD_CURSOR"},
		{"sort=recent&cursor=" + old, 400, "BAD_CURSOR"},
		{"sort=recent&cursor=" + recent.NextCursor, 200, ""},
		{"cursor=" + old, 200, ""},
		{"sort=digest&cursor=" + byDigest.NextCursor, 200, ""},
		{"sort=size", 400, "BAD_REQUEST"},
		{"sort=recent&sort=digest", 400, "BAD_REQUEST"},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/images?"+tc.query, nil))
		var e apiError
		if w.Code != tc.code || (tc.code != 200 && (json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Code != tc.says)) {
			t.Errorf("%s: %d %s; want %d %s", tc.query, w.Code, w.Body, tc.code, tc.says)
		}
	}
	// The old cursor continues after (digest 3, ghcr.io/org/app).
	l, _ := getList(t, h, "limit=1&cursor="+old)
	if len(l.Images) != 1 || l.Images[0].Digest != testDigest(4) {
		t.Fatalf("old cursor: %+v", l)
	}
}

func TestDecodeRecentCursor(t *testing.T) {
	at := time.Date(2026, 12, 3, 8, 0, 0, 5, time.UTC)
	valid := recentCursorOf(store.DecisionRecord{Digest: digestA, Upstream: "docker.io", Repository: "library/alpine", UpdatedAt: at})
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	c := func(t string) string {
		return b64(`{"s":"recent","t":"` + t + `","d":"` + digestA + `","w":"docker.io/library/alpine"}`)
	}
	for _, tc := range []struct {
		name, cursor string
		ok           bool
	}{
		{"what encode wrote", valid.encode(), true},
		{"the zero time", recentCursorOf(store.DecisionRecord{Digest: digestA, Upstream: "a", Repository: "b"}).encode(), true},
		{"written by hand, the same", c("2026-12-03T08:00:00.000000005Z"), true},
		{"digest order", listCursor{Digest: digestA, Where: "a/b"}.encode(), false},
		{"another sort", b64(`{"s":"size","t":"2026-12-03T08:00:00Z","d":"` + digestA + `","w":"a/b"}`), false},
		{"no time", b64(`{"s":"recent","d":"` + digestA + `","w":"a/b"}`), false},
		{"not a time", c("yesterday"), false},
		{"not UTC", c("2026-12-03T09:00:00.000000005+01:00"), false},
		{"not canonical", c("2026-12-03T08:00:00.0000000050Z"), false},
		{"bad digest", b64(`{"s":"recent","t":"2026-12-03T08:00:00Z","d":"sha256:x","w":"a/b"}`), false},
		{"no repository", b64(`{"s":"recent","t":"2026-12-03T08:00:00Z","d":"` + digestA + `","w":"a"}`), false},
		{"unknown field", b64(`{"s":"recent","t":"2026-12-03T08:00:00Z","d":"` + digestA + `","w":"a/b","x":1}`), false},
		{"too long", strings.Repeat("A", maxCursorLen+1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeRecentCursor(tc.cursor)
			if (err == nil) != tc.ok {
				t.Fatalf("decode %q: %+v, %v", tc.cursor, got, err)
			}
			if tc.name == "what encode wrote" && (got != valid || !got.position().At.Equal(at)) {
				t.Fatalf("decoded %+v, want %+v", got, valid)
			}
		})
	}
	if _, err := decodeCursor(valid.encode()); err == nil || !strings.Contains(err.Error(), "another sort") {
		t.Fatalf("a recent cursor in digest order: %v", err)
	}
}

func FuzzDecodeRecentCursor(f *testing.F) {
	f.Add(recentCursorOf(store.DecisionRecord{Digest: digestA, Upstream: "docker.io", Repository: "library/alpine",
		UpdatedAt: time.Date(2026, 12, 3, 8, 0, 0, 5, time.UTC)}).encode())
	f.Add(recentCursorOf(store.DecisionRecord{Digest: digestA, Upstream: "a", Repository: "b"}).encode())
	f.Add(listCursor{Digest: digestA, Where: "a/b"}.encode())
	f.Add("")
	f.Add("eyJzIjoicmVjZW50In0")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := decodeRecentCursor(s)
		_, digestErr := decodeCursor(s)
		if err != nil {
			return
		}
		if digestErr == nil {
			t.Fatalf("%q decodes as a cursor of both sorts", s)
		}
		// What decodes is a cursor encode could have written, and its time
		// is one the store's walk takes back exactly.
		again, err := decodeRecentCursor(c.encode())
		if err != nil || again != c {
			t.Fatalf("%q decodes to %+v, which does not survive encoding: %+v, %v", s, c, again, err)
		}
		if back := recentCursorOf(store.DecisionRecord{Digest: c.Digest, UpdatedAt: c.position().At}); back.At != c.At {
			t.Fatalf("%q: time %q reads back as %q", s, c.At, back.At)
		}
	})
}
