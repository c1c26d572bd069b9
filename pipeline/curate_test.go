package pipeline_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/policy"
)

func parsePolicy(t *testing.T, src string) *policy.Policy {
	t.Helper()
	pol, err := policy.Parse([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// TestCurate: the proxy's curation check answers from the policy in force
// (a reload applies to the next request), refuses only in enforce mode,
// and its message names the image, the rule and the reason.
func TestCurate(t *testing.T) {
	var logs bytes.Buffer
	pl := pipeline.New(pipeline.Options{
		Policy: parsePolicy(t, `rules:
  - name: allowlist
    match: {}
    source: block
    reason: "only images from our ghcr org"
  - name: ours
    match: {upstreams: [ghcr.io], repositories: ["acme/**"]}
    tags: {block: [latest]}
  - name: trial
    mode: warn
    match: {upstreams: [quay.io]}
    tags: {require_digest: true}
  - name: watch
    mode: audit
    match: {upstreams: [gcr.io]}
    source: block
  - name: watch-tags
    mode: audit
    match: {upstreams: [registry.k8s.io]}
    tags: {block: [latest]}
`),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	ctx := context.Background()
	ref := pl.Curate(ctx, "docker.io", "library/nginx", "1.27")
	if ref == nil || ref.Rule != "allowlist" || ref.Code != policy.CodeSourceBlocked ||
		ref.Message != `portcullis: docker.io/library/nginx is not an approved source (rule "allowlist": only images from our ghcr org)` {
		t.Errorf("blocked source: %+v", ref)
	}
	ref = pl.Curate(ctx, "ghcr.io", "acme/api", "latest")
	if ref == nil || ref.Code != policy.CodeTagBlocked || ref.Message != `portcullis: ghcr.io/acme/api: tag "latest" is blocked (rule "ours" blocks tags latest)` {
		t.Errorf("blocked tag: %+v", ref)
	}
	for _, c := range []struct{ upstream, repo, ref string }{
		{"ghcr.io", "acme/api", "1.0"},
		{"ghcr.io", "acme/api", "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		{"gcr.io", "x/y", "1.0"},             // audit: served (the verdict records it)
		{"registry.k8s.io", "x/y", "latest"}, // audit: served (and logged)
		{"quay.io", "x/y", "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
	} {
		if ref := pl.Curate(ctx, c.upstream, c.repo, c.ref); ref != nil {
			t.Errorf("%s/%s %s refused: %+v", c.upstream, c.repo, c.ref, ref)
		}
	}
	if !strings.Contains(logs.String(), "curation would refuse") || !strings.Contains(logs.String(), "TAG_BLOCKED") {
		t.Errorf("a tag refusal audit mode lets through is not logged: %s", logs.String())
	}
	// warn: served with the refusal as its warning.
	ref = pl.Curate(ctx, "quay.io", "x/y", "1.0")
	if ref == nil || !ref.Warn || ref.Code != policy.CodeDigestRequired || !strings.HasPrefix(ref.Message, `pull by tag "1.0" refused`) {
		t.Errorf("warn mode tag refusal: %+v", ref)
	}
	// A reload applies to the next request.
	pl.SetPolicy(parsePolicy(t, "rules:\n  - {name: open, match: {}}\n"))
	if ref := pl.Curate(ctx, "docker.io", "library/nginx", "1.27"); ref != nil {
		t.Errorf("after reload: %+v", ref)
	}
}
