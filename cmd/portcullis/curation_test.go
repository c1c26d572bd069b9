package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/store"
)

func TestCurationAuditRecord(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	counts := []proxy.CurationCount{
		{Rule: "allowlist", Source: "docker.io/library/nginx", Code: "SOURCE_BLOCKED", Count: 7},
		{Rule: "ours", Source: "ghcr.io/acme/api", Code: "TAG_BLOCKED", Count: 2},
		{Rule: proxy.CurationOther, Source: proxy.CurationOther, Code: proxy.CurationOther, Count: 3},
	}
	for i := range maxCurationDetails + 5 {
		counts = append(counts, proxy.CurationCount{Rule: "allowlist", Source: fmt.Sprintf("docker.io/x/y%03d", i), Code: "SOURCE_BLOCKED", Count: 1})
	}
	rec := curationAuditRecord(counts, now)
	if rec.Kind != store.AuditCurationRefusals || rec.Who != "portcullis" || !rec.At.Equal(now) || rec.Why != "117 pulls refused by curation rules" {
		t.Errorf("record %+v", rec)
	}
	// The named groups are the largest, at most maxCurationDetails; the
	// rest (and the tally's own "other") are added up.
	if rec.Details["allowlist docker.io/library/nginx SOURCE_BLOCKED"] != "7" || rec.Details["ours ghcr.io/acme/api TAG_BLOCKED"] != "2" {
		t.Errorf("largest groups missing: %v", rec.Details)
	}
	// 100 named: 2 largest and 98 of the ones; 7 ones and the tally's 3 go
	// to other.
	if rec.Details["total"] != "117" || rec.Details[proxy.CurationOther] != "10" || len(rec.Details) != maxCurationDetails+2 {
		t.Errorf("total %s, other %s, %d details", rec.Details["total"], rec.Details[proxy.CurationOther], len(rec.Details))
	}
}

// TestPolicyCommandsExplainCuration: 'policy check' names what each rule
// refuses before any fetch, and 'policy test' of a refused source or tag
// says so, naming the rule and reason, without contacting the registry
// (the one named here does not listen).
func TestPolicyCommandsExplainCuration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(`rules:
  - name: allowlist
    match: {}
    source: block
    reason: only images from our own registry
  - name: ours
    match: {upstreams: ["127.0.0.1:1"]}
    reason: use a release
    tags: {block: [latest, "*-rc*"]}
  - name: prod
    match: {upstreams: ["127.0.0.1:1"], repositories: [prod/*]}
    tags: {require_digest: true}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"policy", "check", "--config", path}, &stdout, &stderr); code != 0 {
		t.Fatalf("policy check: %d %s", code, stderr.String())
	}
	for _, want := range []string{
		"rule allowlist: refuses every repository it matches, not an approved source: only images from our own registry",
		"rule ours: refuses pulls by the tags latest, *-rc*: use a release",
		"rule prod: refuses every pull by tag, only digests (require_digest)",
	} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("policy check output lacks %q:\n%s", want, stdout.String())
		}
	}
	for _, c := range []struct{ ref, want string }{
		{"docker.io/library/nginx:1.27", `block SOURCE_BLOCKED: not an approved source (rule "allowlist": only images from our own registry)`},
		{"127.0.0.1:1/team/app:2.0-rc1", `block TAG_BLOCKED: tag "2.0-rc1" is blocked (rule "ours" blocks tags latest, *-rc*: use a release)`},
		{"127.0.0.1:1/prod/app:1.0", `block DIGEST_REQUIRED: pull by tag "1.0" refused`},
	} {
		stdout.Reset()
		stderr.Reset()
		code := run(context.Background(), []string{"policy", "test", "--config", path, "--data", t.TempDir(), "--exit-code", "4", c.ref}, &stdout, &stderr)
		if code != 4 || !strings.Contains(stdout.String(), c.want) || !strings.Contains(stdout.String(), ": block (rule ") ||
			!strings.Contains(stdout.String(), "refused by curation before anything is fetched") {
			t.Errorf("policy test %s: exit %d\nstdout %s\nstderr %s\nwant %q", c.ref, code, stdout.String(), stderr.String(), c.want)
		}
	}
}
