package controls_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/controls"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

func digestN(n int) string { return fmt.Sprintf("sha256:%064x", n) }

// flakyStore is a real store whose reads of the controls fail on demand.
type flakyStore struct {
	*store.Bolt
	fail        atomic.Bool
	parentReads atomic.Int64
}

var errDown = errors.New("store down")

func (f *flakyStore) ControlsVersion(ctx context.Context) (uint64, error) {
	if f.fail.Load() {
		return 0, errDown
	}
	return f.Bolt.ControlsVersion(ctx)
}

func (f *flakyStore) Quarantines(ctx context.Context, after string, fn func(store.Quarantine) bool) error {
	if f.fail.Load() {
		return errDown
	}
	return f.Bolt.Quarantines(ctx, after, fn)
}

// Parents counts the reads of the indexes listing a digest, and fails
// them on demand like the other reads.
func (f *flakyStore) Parents(ctx context.Context, upstream, repo, child string, fn func(string) bool) error {
	f.parentReads.Add(1)
	if f.fail.Load() {
		return errDown
	}
	return f.Bolt.Parents(ctx, upstream, repo, child, fn)
}

// clock is a settable time.
type clock struct{ t atomic.Pointer[time.Time] }

func newClock(t time.Time) *clock { c := &clock{}; c.set(t); return c }
func (c *clock) set(t time.Time)  { c.t.Store(&t) }
func (c *clock) now() time.Time   { return *c.t.Load() }

var t0 = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func setup(t *testing.T, o controls.Options) (*flakyStore, *controls.View, *clock) {
	t.Helper()
	b, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	st := &flakyStore{Bolt: b}
	c := newClock(t0)
	o.Now = c.now
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return st, controls.New(st, o), c
}

func TestRefreshLoadsAndKeepsViewOnReadError(t *testing.T) {
	ctx := context.Background()
	st, v, _ := setup(t, controls.Options{})
	if err := st.PutQuarantine(ctx, store.Quarantine{Digest: digestN(1), Reason: "bad", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Quarantined(digestN(1)); ok {
		t.Fatal("quarantined before the view was loaded")
	}
	if err := v.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if q, ok := v.Quarantined(digestN(1)); !ok || q.Reason != "bad" {
		t.Fatalf("Quarantined after Refresh = %+v, %v", q, ok)
	}
	st.fail.Store(true)
	if err := v.Refresh(ctx); !errors.Is(err, errDown) {
		t.Fatalf("Refresh with the store down: %v, want %v", err, errDown)
	}
	if _, ok := v.Quarantined(digestN(1)); !ok {
		t.Fatal("a read error emptied the view")
	}
}

func TestRunReloadsOnVersionChangeAndSurvivesErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, v, _ := setup(t, controls.Options{Poll: 10 * time.Millisecond, Sweep: time.Hour})
	done := make(chan struct{})
	go func() { defer close(done); v.Run(ctx) }()
	defer func() { cancel(); <-done }()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5 s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := st.PutQuarantine(ctx, store.Quarantine{Digest: digestN(2), Reason: "r", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	waitFor("quarantine loaded by the poller", func() bool { _, ok := v.Quarantined(digestN(2)); return ok })
	st.fail.Store(true)
	time.Sleep(50 * time.Millisecond) // several failed polls
	if _, ok := v.Quarantined(digestN(2)); !ok {
		t.Fatal("failed polls emptied the view")
	}
	st.fail.Store(false)
	if _, err := st.DeleteQuarantine(ctx, digestN(2)); err != nil {
		t.Fatal(err)
	}
	waitFor("lifted quarantine dropped by the poller", func() bool { _, ok := v.Quarantined(digestN(2)); return !ok })
}

func TestExpiryStopsApplyingAndSweepIsConditional(t *testing.T) {
	ctx := context.Background()
	var audited []store.AuditRecord
	st, v, c := setup(t, controls.Options{Replica: "r1", Audit: func(_ context.Context, rec store.AuditRecord) error {
		audited = append(audited, rec)
		return nil
	}})
	q := store.Quarantine{Digest: digestN(3), Reason: "r", CreatedAt: t0, Expires: t0.Add(time.Minute)}
	e := store.Exception{ID: "e1", Digest: digestN(4), Reason: "ok", CreatedAt: t0, Expires: t0.Add(time.Minute)}
	gone := store.Quarantine{Digest: digestN(5), Reason: "r", CreatedAt: t0, Expires: t0.Add(time.Minute)}
	for _, q := range []store.Quarantine{q, gone} {
		if err := st.PutQuarantine(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutException(ctx, e); err != nil {
		t.Fatal(err)
	}
	if err := v.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Quarantined(q.Digest); !ok {
		t.Fatal("quarantine not in force before its expiry")
	}
	if _, ok := v.Exception("docker.io", "library/x", e.Digest); !ok {
		t.Fatal("exception not in force before its expiry")
	}
	// Meanwhile, q is re-added with a later expiry and gone is swept by
	// another replica, neither seen by this view yet.
	readded := q
	readded.CreatedAt, readded.Expires = t0.Add(30*time.Second), t0.Add(time.Hour)
	if err := st.PutQuarantine(ctx, readded); err != nil {
		t.Fatal(err)
	}
	if done, err := st.DeleteQuarantineIf(ctx, gone); err != nil || !done {
		t.Fatalf("another replica's sweep: %v, %v", done, err)
	}
	c.set(t0.Add(time.Minute))
	if _, ok := v.Quarantined(q.Digest); ok {
		t.Fatal("the view's quarantine applies at its expiry time")
	}
	if _, ok := v.Exception("docker.io", "library/x", e.Digest); ok {
		t.Fatal("exception applies at its expiry time")
	}
	if err := v.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if got, ok := v.Quarantined(q.Digest); !ok || !got.Expires.Equal(readded.Expires) {
		t.Fatalf("re-added quarantine after the sweep = %+v, %v; want it in force", got, ok)
	}
	var kinds []string
	for _, r := range audited {
		if r.Who != "portcullis" || r.Replica != "r1" {
			t.Errorf("audit record %+v: want who portcullis, replica r1", r)
		}
		kinds = append(kinds, r.Kind+":"+r.What+":"+r.Details["exception"])
	}
	if want := "[" + store.AuditExceptionExpired + ":" + digestN(4) + ":e1]"; fmt.Sprint(kinds) != want {
		t.Fatalf("audited %v, want %s (the re-added quarantine and the one another replica swept are not recorded)", kinds, want)
	}
	if _, err := st.DeleteException(ctx, "e1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("expired exception still in the store: %v", err)
	}
}

func blocking(codes ...string) policy.Decision {
	d := policy.Decision{Verdict: policy.Block, Effective: policy.Block, Mode: policy.ModeEnforce, Rule: "default"}
	for _, c := range codes {
		d.Reasons = append(d.Reasons, policy.Reason{Code: c, Verdict: policy.Block, Message: strings.ToLower(c)})
	}
	return d
}

func TestResolvePrecedence(t *testing.T) {
	ctx := context.Background()
	st, v, _ := setup(t, controls.Options{})
	const (
		quarantinedImage = 1
		exceptedImage    = 2
		both             = 3
		index            = 4
		child            = 5
		scopedImage      = 6
		plainImage       = 7
		excIndex         = 8
		excChild         = 9
	)
	put := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	exp := t0.Add(time.Hour)
	for _, n := range []int{quarantinedImage, both, index} {
		put(st.PutQuarantine(ctx, store.Quarantine{Digest: digestN(n), Reason: "CVE-2026-1234 under investigation", CreatedBy: "ci", CreatedAt: t0, Expires: exp}))
	}
	for i, n := range []int{exceptedImage, both, excIndex} {
		put(st.PutException(ctx, store.Exception{ID: fmt.Sprint("x", i), Digest: digestN(n), Reason: "accepted risk", CreatedBy: "ci", CreatedAt: t0, Expires: exp}))
	}
	put(st.PutException(ctx, store.Exception{ID: "scoped", Digest: digestN(scopedImage), Repository: "docker.io/library/*", Reason: "ok here", CreatedAt: t0, Expires: exp}))
	put(st.LinkIndex(ctx, "docker.io", "library/app", digestN(index), []string{digestN(child)}))
	put(st.LinkIndex(ctx, "docker.io", "library/app", digestN(excIndex), []string{digestN(excChild)}))
	put(v.Refresh(ctx))

	allow := policy.Decision{Verdict: policy.Allow, Effective: policy.Allow, Mode: policy.ModeEnforce}
	audit := blocking(policy.CodeVulnerable)
	audit.Mode, audit.Effective = policy.ModeAudit, policy.Allow
	for _, tc := range []struct {
		name      string
		repo      string
		digest    int
		d         policy.Decision
		effective policy.Verdict
		first     string // code of the first reason; "" none
		control   string // "quarantine", "exception" or ""
	}{
		{"quarantine blocks an allowed image", "library/app", quarantinedImage, allow, policy.Block, policy.CodeQuarantined, "quarantine"},
		{"quarantine blocks in audit mode", "library/app", quarantinedImage, audit, policy.Block, policy.CodeQuarantined, "quarantine"},
		{"quarantine beats exception", "library/app", both, blocking(policy.CodeVulnerable), policy.Block, policy.CodeQuarantined, "quarantine"},
		{"index quarantine covers its child", "library/app", child, allow, policy.Block, policy.CodeQuarantined, "quarantine"},
		{"index quarantine only in its repository", "library/other", child, allow, policy.Allow, "", ""},
		{"exception turns a block into warn", "library/app", exceptedImage, blocking(policy.CodeVulnerable), policy.Warn, policy.CodeException, "exception"},
		{"exception on an index covers its child", "library/app", excChild, blocking(policy.CodeVulnerable), policy.Warn, policy.CodeException, "exception"},
		{"exception leaves an allow alone", "library/app", exceptedImage, allow, policy.Allow, "", ""},
		{"exception only when the effective verdict blocks", "library/app", exceptedImage, audit, policy.Allow, policy.CodeVulnerable, ""},
		{"no exception over malware", "library/app", exceptedImage, blocking(policy.CodeVulnerable, policy.CodeMalware), policy.Block, policy.CodeVulnerable, ""},
		{"no exception over an invalid signature", "library/app", exceptedImage, blocking(policy.CodeSignatureInvalid), policy.Block, policy.CodeSignatureInvalid, ""},
		{"no exception over curation", "library/app", exceptedImage, blocking(policy.CodeSourceBlocked), policy.Block, policy.CodeSourceBlocked, ""},
		{"no exception over a tag rule", "library/app", exceptedImage, blocking(policy.CodeTagBlocked), policy.Block, policy.CodeTagBlocked, ""},
		{"scoped exception in a matching repository", "library/app", scopedImage, blocking(policy.CodeVulnerable), policy.Warn, policy.CodeException, "exception"},
		{"scoped exception not in another", "team/app", scopedImage, blocking(policy.CodeVulnerable), policy.Block, policy.CodeVulnerable, ""},
		{"no control: the policy's decision", "library/app", plainImage, blocking(policy.CodeVulnerable), policy.Block, policy.CodeVulnerable, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := v.Resolve(ctx, "docker.io", tc.repo, digestN(tc.digest), tc.d)
			if r.Decision.Effective != tc.effective {
				t.Fatalf("effective %s, want %s (%+v)", r.Decision.Effective, tc.effective, r.Decision)
			}
			first := ""
			if len(r.Decision.Reasons) > 0 {
				first = r.Decision.Reasons[0].Code
			}
			if first != tc.first {
				t.Fatalf("first reason %q, want %q", first, tc.first)
			}
			control := ""
			switch {
			case r.Quarantine != nil && r.Exception != nil:
				control = "both"
			case r.Quarantine != nil:
				control = "quarantine"
			case r.Exception != nil:
				control = "exception"
			}
			if control != tc.control {
				t.Fatalf("control %q, want %q", control, tc.control)
			}
			if len(r.Decision.Reasons) < len(tc.d.Reasons) {
				t.Fatalf("the policy's reasons were dropped: %+v", r.Decision.Reasons)
			}
			if got := v.Apply(ctx, "docker.io", tc.repo, digestN(tc.digest), tc.d); got.Effective != tc.effective {
				t.Fatalf("Apply effective %s, Resolve %s", got.Effective, tc.effective)
			}
		})
	}
	msg := v.Apply(ctx, "docker.io", "library/app", digestN(quarantinedImage), allow).Message(0)
	for _, want := range []string{digestN(quarantinedImage), "is quarantined", "CVE-2026-1234 under investigation", "by ci", "until 2026-12-03T13:00:00Z"} {
		if !strings.Contains(msg, want) {
			t.Errorf("quarantine message %q lacks %q", msg, want)
		}
	}
	msg = v.Apply(ctx, "docker.io", "library/app", digestN(exceptedImage), blocking(policy.CodeVulnerable)).Message(0)
	for _, want := range []string{"exception x0", "accepted risk", "until 2026-12-03T13:00:00Z", "vulnerable"} {
		if !strings.Contains(msg, want) {
			t.Errorf("exception message %q lacks %q", msg, want)
		}
	}
}
