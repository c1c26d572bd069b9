package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/controls"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

// The images and scans views show the verdict after the operators'
// controls, with the policy's own and the control beside it.
func TestViewsShowControls(t *testing.T) {
	ctx := context.Background()
	st, _ := verdictStore(t, 1)
	blocked := store.DecisionRecord{Digest: testDigest(0), Upstream: "docker.io", Repository: "library/app", Verdict: "block",
		Decision: &policy.Decision{Verdict: policy.Block, Effective: policy.Block, Mode: "enforce", Rule: "no-vulns",
			Reasons: []policy.Reason{{Code: policy.CodeVulnerable, Verdict: policy.Block, Message: "1 HIGH vulnerability"}}}, UpdatedAt: time.Now()}
	if err := st.PutDecision(ctx, &blocked); err != nil {
		t.Fatal(err)
	}
	view := controls.New(st, controls.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	h := &Handler{Scans: st, Resolver: fakeResolver{}, Controls: view}
	scanView := func() ScanView {
		t.Helper()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/scans/"+testDigest(0)+"?repository=docker.io/library/app", nil))
		var v ScanView
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &v) != nil {
			t.Fatalf("scan view: %d %s", w.Code, w.Body)
		}
		return v
	}
	refresh := func() {
		t.Helper()
		if err := h.Controls.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	refresh()
	if got, _, _ := getStatus(t, h, "ref=docker.io/library/app:app"); got.Verdict != "block" || got.PolicyVerdict != "" || got.Exception != nil {
		t.Fatalf("no control: %+v", got)
	}
	exc := store.Exception{ID: "x1", Digest: testDigest(0), Repository: "docker.io/library/*", Reason: "accepted risk", CreatedBy: "ci", CreatedAt: time.Now(), Expires: time.Now().Add(time.Hour)}
	if err := st.PutException(ctx, exc); err != nil {
		t.Fatal(err)
	}
	refresh()
	got, _, _ := getStatus(t, h, "ref=docker.io/library/app:app")
	if got.Verdict != "warn" || got.PolicyVerdict != "block" || got.Exception == nil || got.Exception.ID != "x1" ||
		len(got.Reasons) != 2 || got.Reasons[0].Code != policy.CodeException || got.Reasons[1].Code != policy.CodeVulnerable {
		t.Fatalf("with an exception: %+v", got)
	}
	if v := scanView(); v.Verdict != "warn" || v.PolicyVerdict != "block" || v.Exception == nil || v.Decision == nil || !v.Decision.Has(policy.CodeException) {
		t.Fatalf("scan view with an exception: verdict %q policy %q exception %+v", v.Verdict, v.PolicyVerdict, v.Exception)
	}
	if err := st.PutQuarantine(ctx, store.Quarantine{Digest: testDigest(0), Reason: "under investigation", CreatedBy: "ci", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	refresh()
	got, _, _ = getStatus(t, h, "ref=docker.io/library/app:app")
	if got.Verdict != "block" || got.PolicyVerdict != "block" || got.Quarantine == nil || got.Exception != nil || got.Reasons[0].Code != policy.CodeQuarantined {
		t.Fatalf("quarantined: %+v", got)
	}
	if v := scanView(); v.Verdict != "block" || v.Quarantine == nil || v.Decisions[0].Decision.Has(policy.CodeQuarantined) {
		t.Fatalf("scan view quarantined: verdict %q quarantine %+v decisions %+v", v.Verdict, v.Quarantine, v.Decisions)
	}
	// A digest with no verdict yet is blocked by its quarantine too.
	if err := st.PutQuarantine(ctx, store.Quarantine{Digest: armDigest, Reason: "bad arm build", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	refresh()
	got, _, _ = getStatus(t, h, "ref=docker.io/library/app:multi&platform=linux/arm64")
	if got.Verdict != "block" || got.PolicyVerdict != verdictUnknown || got.Quarantine == nil {
		t.Fatalf("quarantined with no verdict: %+v", got)
	}
}

// The images list, its verdict filter, the vulnerability answer and the
// overview's counts show each verdict after the digest's own controls,
// naming the control and the policy's own verdict.
func TestListsShowControls(t *testing.T) {
	ctx := context.Background()
	st, _ := verdictStore(t, 3) // 0: allowed in ghcr.io/org/app; 2: blocked in docker.io/library/app and team/app
	view := controls.New(st, controls.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	h := &Handler{Scans: st, Resolver: fakeResolver{}, Controls: view}
	if err := st.PutQuarantine(ctx, store.Quarantine{Digest: testDigest(0), Reason: "incident", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutException(ctx, store.Exception{ID: "x1", Digest: testDigest(2), Repository: "docker.io/library/*", Reason: "accepted",
		CreatedAt: time.Now(), Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := view.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	listed := func(query string) []string {
		t.Helper()
		l, code := getList(t, h, query)
		if code != http.StatusOK {
			t.Fatalf("%s: %d", query, code)
		}
		name := map[string]string{testDigest(0): "0", testDigest(1): "1", testDigest(2): "2"}
		var out []string
		for _, im := range l.Images {
			out = append(out, fmt.Sprintf("%s %s/%s %s %s %s", name[im.Digest], im.Upstream, im.Repository, im.Verdict, im.Control, im.PolicyVerdict))
		}
		return out
	}
	if got, want := listed("verdict=block"), []string{"0 ghcr.io/org/app block quarantine allow", "2 docker.io/team/app block  "}; !slices.Equal(got, want) {
		t.Errorf("verdict=block: %q, want %q", got, want)
	}
	if got, want := listed("verdict=warn"), []string{"2 docker.io/library/app warn exception block"}; !slices.Equal(got, want) {
		t.Errorf("verdict=warn: %q, want %q", got, want)
	}
	if got := listed("verdict=allow"); slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "0 ") }) {
		t.Errorf("the quarantined digest is listed as allowed: %q", got)
	}
	ans, err := h.Vulnerability(ctx, "CVE-2023-0001")
	if err != nil || len(ans.Images) != 1 {
		t.Fatalf("vulnerability answer: %+v %v", ans, err)
	}
	for _, r := range ans.Images[0].Repositories {
		if r.Repository == "library/app" && (r.Verdict != "warn" || r.Control != "exception") {
			t.Errorf("vulnerability answer in %s: %+v", r.Repository, r)
		}
	}
	ov, err := h.Overview(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Verdicts: 0 in ghcr (quarantined: block), 1 in ghcr and library
	// (allow), 2 in ghcr (allow), library (excepted: warn), team (block).
	if want := map[string]int{"allow": 3, "warn": 1, "block": 2, "pending": 0}; !maps.Equal(ov.Verdicts, want) {
		t.Errorf("overview verdicts %v, want %v", ov.Verdicts, want)
	}
}
