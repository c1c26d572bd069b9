package pipeline_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

// What-if judges a stored result under every rule of the policy in force,
// from stored facts only (no Images, no Registry: nothing to reach an
// upstream with), and stores nothing.
func TestWhatIfUsesStoredFactsOnly(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const d = "sha256:0000000000000000000000000000000000000000000000000000000000000abc"
	rec := store.ScanRecord{Digest: d, State: store.ScanDone, Upstream: "docker.io", Repository: "library/app",
		Findings: []vulndb.Finding{{ID: "CVE-2024-0001", Package: "openssl", InstalledVersion: "1.0", Severity: vulndb.SeverityHigh}},
		Facts:    &store.ImageFacts{CompressedSize: 10 << 20, LayerCount: 3}}
	if err := st.PutScan(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	pol := mustPolicy(t, `
rules:
  - name: strict
    match: {repositories: ["library/*"]}
    vulnerabilities: {block: HIGH}
  - name: lenient
    match: {repositories: ["team/*"]}
    mode: audit
    vulnerabilities: {warn: HIGH}
  - name: small
    match: {repositories: ["tiny/*"]}
    size: {max_compressed: 1MB}
`)
	before := time.Now()
	pl := pipeline.New(pipeline.Options{Store: st, Policy: pol, Matcher: versionOnly("sha256:ab@" + time.Now().UTC().Format(time.RFC3339)), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if at := pl.PolicyLoadedAt(); at.Before(before) || at.After(time.Now()) {
		t.Fatalf("policy loaded at %v, want between %v and now", at, before)
	}

	outcomes, err := pl.WhatIf(ctx, "docker.io", "library/app", d)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		rule     string
		selected bool
		verdict  policy.Verdict
		code     string
	}{
		{"strict", true, policy.Block, policy.CodeVulnerable},
		{"lenient", false, policy.Allow, policy.CodeVulnerable}, // audit: warned, served
		{"small", false, policy.Block, policy.CodeTooLarge},
	}
	if len(outcomes) != len(want) {
		t.Fatalf("%d outcomes, want %d: %+v", len(outcomes), len(want), outcomes)
	}
	for i, w := range want {
		o := outcomes[i]
		if o.Rule.Name != w.rule || o.Selected != w.selected || o.Decision.Effective != w.verdict || !o.Decision.Has(w.code) {
			t.Errorf("outcome %d: rule %s selected %v effective %s reasons %+v; want %+v", i, o.Rule.Name, o.Selected, o.Decision.Effective, o.Decision.Reasons, w)
		}
	}
	// Nothing was stored.
	if _, err := st.Decision(ctx, d, "docker.io", "library/app"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("what-if stored a decision: %v", err)
	}

	// A repository no rule matches gets the built-in rule, marked selected.
	outcomes, err = pl.WhatIf(ctx, "quay.io", "other/app", d)
	if err != nil {
		t.Fatal(err)
	}
	if last := outcomes[len(outcomes)-1]; last.Rule.Name != "unmatched" || !last.Selected {
		t.Fatalf("unmatched repository: last outcome %+v", last)
	}

	// An image never scanned is not found, never fetched.
	if _, err := pl.WhatIf(ctx, "docker.io", "library/app", "sha256:"+"1234567890123456789012345678901234567890123456789012345678901234"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unscanned image: %v, want store.ErrNotFound", err)
	}

	pl.SetPolicy(mustPolicy(t, "rules: [{name: other, match: {}}]\n"))
	if !pl.PolicyLoadedAt().After(before) {
		t.Fatal("SetPolicy did not move the load time")
	}
}

// versionOnly is a database that was imported (its version says when it
// was built) and that what-if must never ask to match anything.
type versionOnly string

func (v versionOnly) Version() string { return string(v) }

func (v versionOnly) MatchVersioned(context.Context, []vulndb.Query) ([]vulndb.Finding, string, error) {
	return nil, "", errors.New("what-if matched packages again instead of using the stored findings")
}
