package api

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

// walkCounting counts the walks of the verdicts.
type walkCounting struct {
	*store.Bolt
	walks atomic.Int32
}

func (w *walkCounting) Decisions(ctx context.Context, digest string, fn func(store.DecisionRecord) bool) error {
	if digest == "" {
		w.walks.Add(1)
		time.Sleep(20 * time.Millisecond) // long enough for the callers to meet
	}
	return w.Bolt.Decisions(ctx, digest, fn)
}

// overviewStore holds: 30 verdicts (10 allow, 8 warn, 7 block, 5 pending:
// no decision yet), each with one history entry a minute apart; 12 scans,
// with findings: CVE-A in every image (twice in some, on two packages),
// CVE-B in 6, CVE-C in 6 at a higher severity, 12 more in one image each.
func overviewStore(t *testing.T) *store.Bolt {
	t.Helper()
	ctx := context.Background()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	base := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for i := range 30 {
		v := policy.Allow
		switch {
		case i >= 25:
			v = ""
		case i >= 18:
			v = policy.Block
		case i >= 10:
			v = policy.Warn
		}
		r := store.DecisionRecord{Digest: testDigest(i), Upstream: "docker.io", Repository: fmt.Sprintf("team/app%d", i%4), Verdict: string(v),
			History: []store.VerdictChange{{At: base.Add(time.Duration(i) * time.Minute), To: string(v)}}}
		if v != "" {
			r.Decision = &policy.Decision{Verdict: v, Effective: v}
		}
		if err := st.PutDecision(ctx, &r); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 12 {
		fs := []vulndb.Finding{{ID: "CVE-A", Package: "a", Severity: vulndb.SeverityLow}}
		if i%2 == 0 {
			fs = append(fs, vulndb.Finding{ID: "CVE-A", Package: "a2", Severity: vulndb.SeverityLow},
				vulndb.Finding{ID: "CVE-B", Package: "b", Severity: vulndb.SeverityMedium})
		} else {
			fs = append(fs, vulndb.Finding{ID: "CVE-C", Package: "c", Severity: vulndb.SeverityCritical})
		}
		fs = append(fs, vulndb.Finding{ID: fmt.Sprintf("CVE-X%02d", i), Package: "x", Severity: vulndb.SeverityHigh})
		rec := store.ScanRecord{Digest: testDigest(i), State: store.ScanDone, Findings: fs}
		if err := st.PutScan(ctx, &rec); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func TestOverview(t *testing.T) {
	ctx := context.Background()
	st := overviewStore(t)
	now := time.Now()
	if err := st.Add(ctx, BlockedPullsCounter, now, map[string]int64{"VULNERABLE": 4, "UNSIGNED": 9, "OTHER": 1}); err != nil {
		t.Fatal(err)
	}
	if err := st.Add(ctx, BlockedPullsCounter, now.Add(-30*time.Hour), map[string]int64{"TOO_OLD": 50}); err != nil {
		t.Fatal(err)
	}
	builtAt := now.Add(-48 * time.Hour)
	h := &Handler{Scans: st, Counters: st,
		CacheBytes:  func() int64 { return 12345 },
		CacheCounts: func() (int64, int64) { return 30, 10 },
		DBStatus:    func(context.Context) (DBStatus, error) { return DBStatus{Version: "v42", BuiltAt: builtAt}, nil },
		DBMaxAge:    7 * 24 * time.Hour,
	}
	ov, err := h.Overview(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"allow": 10, "warn": 8, "block": 7, "pending": 5}; !maps.Equal(ov.Verdicts, want) {
		t.Errorf("verdicts %v, want %v", ov.Verdicts, want)
	}
	if want := []ReasonCount{{"UNSIGNED", 9}, {"VULNERABLE", 4}, {"OTHER", 1}}; !slices.Equal(ov.BlockedLast24h, want) {
		t.Errorf("blocked %v, want %v", ov.BlockedLast24h, want)
	}
	wantTop := []VulnCount{{"CVE-A", vulndb.SeverityLow, 12}, {"CVE-C", vulndb.SeverityCritical, 6}, {"CVE-B", vulndb.SeverityMedium, 6},
		{"CVE-X00", vulndb.SeverityHigh, 1}, {"CVE-X01", vulndb.SeverityHigh, 1}}
	if len(ov.TopVulnerabilities) != 10 || !slices.Equal(ov.TopVulnerabilities[:5], wantTop) {
		t.Errorf("top vulnerabilities %v, want 10 starting %v", ov.TopVulnerabilities, wantTop)
	}
	if ov.CacheBytes != 12345 || ov.CacheHits != 30 || ov.CacheMisses != 10 || ov.DBVersion != "v42" || !ov.DBBuiltAt.Equal(builtAt) || ov.DBState != DBOK {
		t.Errorf("cache and database: %+v", ov)
	}
	if len(ov.RecentChanges) != 20 || ov.RecentChanges[0].Digest != testDigest(29) || ov.RecentChanges[19].Digest != testDigest(10) ||
		!slices.IsSortedFunc(ov.RecentChanges, func(a, b RecentChange) int { return b.At.Compare(a.At) }) {
		t.Errorf("recent changes: %d, %+v", len(ov.RecentChanges), ov.RecentChanges)
	}
	if ov.Truncated || time.Since(ov.ComputedAt) > time.Minute {
		t.Errorf("truncated %v, computed at %v", ov.Truncated, ov.ComputedAt)
	}

	// The aggregates are cached: a new verdict shows after the cache ages.
	r := store.DecisionRecord{Digest: testDigest(99), Upstream: "docker.io", Repository: "x/y", Verdict: "block",
		Decision: &policy.Decision{Verdict: policy.Block, Effective: policy.Block}}
	if err := st.PutDecision(ctx, &r); err != nil {
		t.Fatal(err)
	}
	ov.Verdicts["block"] = 1000 // callers get copies
	if again, err := h.Overview(ctx); err != nil || again.Verdicts["block"] != 7 || !again.ComputedAt.Equal(ov.ComputedAt) {
		t.Errorf("within 30 s: %v, %v; want the cached count 7", again.Verdicts, err)
	}
	// Past 30 s the cached counts are still answered at once while a walk
	// refreshes them in the background; past 5 min the answer waits for it.
	h.overview.mu.Lock()
	h.overview.at = time.Now().Add(-overviewTTL)
	h.overview.mu.Unlock()
	if again, err := h.Overview(ctx); err != nil || again.Verdicts["block"] != 7 {
		t.Errorf("after 30 s: %v, %v; want the cached 7 while the walk runs", again.Verdicts, err)
	}
	refreshed := false
	for deadline := time.Now().Add(10 * time.Second); !refreshed && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		again, err := h.Overview(ctx)
		refreshed = err == nil && again.Verdicts["block"] == 8
	}
	if !refreshed {
		t.Error("after 30 s: the background walk never brought the new verdict in")
	}
	r.Revision, r.Digest = 0, testDigest(98)
	if err := st.PutDecision(ctx, &r); err != nil {
		t.Fatal(err)
	}
	h.overview.mu.Lock()
	h.overview.at = time.Now().Add(-overviewStale)
	h.overview.mu.Unlock()
	if again, err := h.Overview(ctx); err != nil || again.Verdicts["block"] != 9 {
		t.Errorf("after 5 min: %v, %v; want 9 (waited for the walk)", again.Verdicts, err)
	}

	for _, tc := range []struct {
		status DBStatus
		maxAge time.Duration
		want   string
	}{
		{DBStatus{}, 0, DBMissing},
		{DBStatus{Version: "v1", BuiltAt: now.Add(-8 * 24 * time.Hour)}, 7 * 24 * time.Hour, DBStale},
		{DBStatus{Version: "v1", BuiltAt: now.Add(-8 * 24 * time.Hour)}, 0, DBOK},
	} {
		h.DBStatus = func(context.Context) (DBStatus, error) { return tc.status, nil }
		h.DBMaxAge = tc.maxAge
		if ov, err := h.Overview(ctx); err != nil || ov.DBState != tc.want {
			t.Errorf("%+v, max age %v: %q, %v; want %q", tc.status, tc.maxAge, ov.DBState, err, tc.want)
		}
	}
	// Nothing wired but the store: unknowns, not errors.
	bare := &Handler{Scans: st}
	if ov, err := bare.Overview(ctx); err != nil || ov.CacheBytes != -1 || ov.DBState != DBMissing || ov.BlockedLast24h == nil {
		t.Errorf("bare handler: %+v, %v", ov, err)
	}
}

// Concurrent requests share one walk of the store.
func TestOverviewOneWalkAtATime(t *testing.T) {
	counting := &walkCounting{Bolt: overviewStore(t)}
	h := &Handler{Scans: counting}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := h.Overview(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := counting.walks.Load(); n != 1 {
		t.Fatalf("%d walks for 8 concurrent requests, want 1", n)
	}
	// A request that gives up does not cancel the walk others wait on.
	h.overview.mu.Lock()
	h.overview.at = time.Time{}
	h.overview.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Overview(ctx); err == nil {
		t.Error("a cancelled request got an answer")
	}
	if ov, err := h.Overview(context.Background()); err != nil || ov.Verdicts["allow"] != 10 {
		t.Errorf("after a cancelled request: %v, %v", ov.Verdicts, err)
	}
}

func TestOverviewEndpoint(t *testing.T) {
	st := overviewStore(t)
	if err := st.Add(context.Background(), BlockedPullsCounter, time.Now(), map[string]int64{"VULNERABLE": 3}); err != nil {
		t.Fatal(err)
	}
	h := &Handler{Scans: st, Counters: st}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/overview", nil))
	var got struct {
		Verdicts map[string]int `json:"verdicts"`
		Blocked  []struct {
			Code  string `json:"code"`
			Count int64  `json:"count"`
		} `json:"blocked_last_24h"`
		Top        []map[string]any `json:"top_vulnerabilities"`
		CacheBytes int64            `json:"cache_bytes"`
		DBState    string           `json:"db_state"`
		Recent     []map[string]any `json:"recent_changes"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || w.Code != 200 {
		t.Fatalf("%d %s: %v", w.Code, w.Body, err)
	}
	if got.Verdicts["block"] != 7 || len(got.Blocked) != 1 || got.Blocked[0].Code != "VULNERABLE" || got.Blocked[0].Count != 3 ||
		len(got.Top) != 10 || got.Top[0]["id"] != "CVE-A" || got.CacheBytes != -1 || got.DBState != "missing" || len(got.Recent) != 20 || got.Recent[0]["digest"] != testDigest(29) {
		t.Errorf("%s", w.Body)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/api/v1/overview", nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", w.Code)
	}
}
