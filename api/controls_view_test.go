package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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
