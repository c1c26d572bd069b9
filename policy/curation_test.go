package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseCuration(t *testing.T) {
	pol := mustParse(t, `rules:
  - name: allowlist
    match: {}
    source: block
    reason: "only images from our ghcr org"
  - name: ours
    match: {upstreams: [ghcr.io], repositories: ["acme/**"]}
    source: allow
    reason: no latest, no release candidates
    tags: {block: [latest, "*-rc*"], require_digest: false}
  - name: pinned
    match: {upstreams: [ghcr.io], repositories: [acme/prod/*]}
    tags: {require_digest: true}
`)
	a, o, p := pol.Rules[0], pol.Rules[1], pol.Rules[2]
	if a.Source != SourceBlock || a.Reason != "only images from our ghcr org" || a.Tags != nil {
		t.Errorf("allowlist = %+v", a)
	}
	if o.Source != "" || o.Tags == nil || strings.Join(o.Tags.Block, ",") != "latest,*-rc*" || o.Tags.RequireDigest {
		t.Errorf("ours = %+v tags %+v", o, o.Tags)
	}
	if p.Tags == nil || !p.Tags.RequireDigest || len(p.Tags.Block) != 0 {
		t.Errorf("pinned tags = %+v", p.Tags)
	}
	// source: allow is the default: the same content, the same version.
	if mustParse(t, "rules:\n  - {mode: warn, source: allow}\n").Version() != mustParse(t, "rules:\n  - {mode: warn}\n").Version() {
		t.Error("source: allow changes the policy version")
	}
	// Existing policies keep their version (no stored verdict re-evaluated
	// for nothing after an upgrade).
	if mustParse(t, "rules:\n  - {mode: warn}\n").Version() != contentHash([]Rule{{Name: "rules[0]", Mode: ModeWarn, OnUnscanned: OnUnscanned{Wait: defaultWait, Then: Block}, OnError: Block, Malware: Block}}) {
		t.Error("a policy without curation fields hashes differently")
	}
}

func TestParseCurationErrors(t *testing.T) {
	many := make([]string, MaxTagPatterns+1)
	for i := range many {
		many[i] = fmt.Sprintf("t%d", i)
	}
	for _, c := range []struct{ src, want string }{
		{"rules:\n  - source: deny\n", `line 2: rules[0].source: unknown source "deny" (want allow or block)`},
		{"rules:\n  - source: [block]\n", `line 2: rules[0].source: want allow or block, got a list`},
		{"rules:\n  - tags: {block: [\"rc/*\"]}\n",
			`line 2: rules[0].tags.block: tag pattern "rc/*": "/" cannot appear in a tag (letters, digits, '_', '.', '-'; '*' and '?' as wildcards)`},
		{"rules:\n  - tags: {block: [\"\"]}\n", `line 2: rules[0].tags.block: empty tag pattern`},
		{"rules:\n  - tags: {block: [\"" + strings.Repeat("a", 129) + "\"]}\n",
			`line 2: rules[0].tags.block: tag pattern "aaaaaaaaaaaaaaaaaaaa"… is longer than 128 characters, the longest a tag can be`},
		{"rules:\n  - tags: {block: [" + strings.Join(many, ", ") + "]}\n",
			`line 2: rules[0].tags.block: 101 patterns; at most 100 (a pattern such as "*-rc*" covers many tags)`},
		{"rules:\n  - tags: {block: latest}\n", `line 2: rules[0].tags.block: want a list of strings, got "latest"`},
		{"rules:\n  - tags: {require_digest: yes}\n", `line 2: rules[0].tags.require_digest: want true or false, got "yes"`},
		{"rules:\n  - tags: {}\n", `line 2: rules[0].tags: checks nothing: set block to tag patterns or require_digest: true`},
		{"rules:\n  - tags: {allow: [x]}\n", `line 2: rules[0].tags: unknown key "allow" (want one of block, require_digest)`},
		{"rules:\n  - source: block\n    reason: \"" + strings.Repeat("x", 513) + "\"\n",
			`line 3: rules[0].reason: reason is 513 bytes; at most 512 (it is shown to clients on one line)`},
		{"rules:\n  - source: block\n    reason: \"two\\nlines\"\n",
			`line 3: rules[0].reason: reason must be one line of text, without control characters`},
		{"rules:\n  - source: block\n    reason: \"  \"\n", `line 3: rules[0].reason: empty reason (leave the key out for none)`},
		{"rules:\n  - reason: why not\n",
			`line 2: rules[0].reason: is shown only when the rule refuses a pull (source: block, or tags); this rule refuses none`},
		{"rules:\n  - source: allow\n    reason: why not\n",
			`line 3: rules[0].reason: is shown only when the rule refuses a pull (source: block, or tags); this rule refuses none`},
		{"rules:\n  - source: block\n    tags: {block: [latest]}\n",
			`line 2: rules[0].source: block refuses every pull the rule matches, so its tags rules would never apply; remove one`},
	} {
		_, err := Parse([]byte(c.src))
		if err == nil {
			t.Errorf("Parse(%q) succeeded, want %s", c.src, c.want)
			continue
		}
		if err.Error() != c.want {
			t.Errorf("Parse(%q)\n got %s\nwant %s", c.src, err, c.want)
		}
	}
}

const curationPolicy = `rules:
  - name: allowlist
    match: {}
    source: block
    reason: only images from our ghcr org
  - name: ours
    match: {upstreams: [ghcr.io], repositories: ["acme/**"]}
    reason: use a release
    tags: {block: [latest, "*-rc*", "v?-dev"]}
  - name: pinned
    match: {upstreams: [ghcr.io], repositories: [acme/prod/*]}
    tags: {require_digest: true}
  - name: trial
    mode: warn
    match: {upstreams: [quay.io]}
    source: block
  - name: watch
    mode: audit
    match: {upstreams: [gcr.io]}
    tags: {require_digest: true}
`

func TestCurate(t *testing.T) {
	pol := mustParse(t, curationPolicy)
	const dgst = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, c := range []struct {
		upstream, repo, ref string
		code                string // "" not refused
		effective           Verdict
		msg                 string
	}{
		{"docker.io", "library/nginx", "1.27", CodeSourceBlocked, Block, `not an approved source (rule "allowlist": only images from our ghcr org)`},
		{"docker.io", "library/nginx", dgst, CodeSourceBlocked, Block, ""},
		{"docker.io", "library/nginx", "", CodeSourceBlocked, Block, ""},
		{"ghcr.io", "acme/api", "1.4.2", "", "", ""},
		{"ghcr.io", "acme/api", "latest", CodeTagBlocked, Block, `tag "latest" is blocked (rule "ours" blocks tags latest, *-rc*, v?-dev: use a release)`},
		{"ghcr.io", "acme/api", "2.0.0-rc1", CodeTagBlocked, Block, ""},
		{"ghcr.io", "acme/api", "v1-dev", CodeTagBlocked, Block, ""},
		{"ghcr.io", "acme/api", "v10-dev", "", "", ""},
		{"ghcr.io", "acme/api", "Latest", "", "", ""}, // tags are case-sensitive
		// A digest never meets the tag rules; nor does a request without a
		// reference.
		{"ghcr.io", "acme/api", dgst, "", "", ""},
		{"ghcr.io", "acme/api", "", "", "", ""},
		{"ghcr.io", "acme/prod/api", "1.0", CodeDigestRequired, Block, `pull by tag "1.0" refused: pull by digest (@sha256:…) (rule "pinned" requires a digest)`},
		{"ghcr.io", "acme/prod/api", dgst, "", "", ""},
		{"ghcr.io", "other/app", "1.0", CodeSourceBlocked, Block, ""},
		// Modes apply as everywhere: warn serves with a warning, audit
		// only records.
		{"quay.io", "x/y", "1", CodeSourceBlocked, Warn, `not an approved source (rule "trial")`},
		{"gcr.io", "x/y", "1", CodeDigestRequired, Allow, ""},
	} {
		d, refused := pol.Curate(c.upstream, c.repo, c.ref)
		if c.code == "" {
			if refused {
				t.Errorf("Curate(%s/%s %q) refused: %+v", c.upstream, c.repo, c.ref, d)
			}
			continue
		}
		if !refused || len(d.Reasons) != 1 || d.Reasons[0].Code != c.code || d.Effective != c.effective || d.Verdict != Block {
			t.Errorf("Curate(%s/%s %q) = %v %+v, want %s effective %s", c.upstream, c.repo, c.ref, refused, d, c.code, c.effective)
			continue
		}
		if c.msg != "" && d.Reasons[0].Message != c.msg {
			t.Errorf("Curate(%s/%s %q) message\n got %s\nwant %s", c.upstream, c.repo, c.ref, d.Reasons[0].Message, c.msg)
		}
		if d.Reasons[0].Data["rule"] != d.Rule || d.PolicyVersion != pol.Version() {
			t.Errorf("Curate(%s/%s %q): data %v, rule %s, version %s", c.upstream, c.repo, c.ref, d.Reasons[0].Data, d.Rule, d.PolicyVersion)
		}
	}
}

func TestEvaluateReportsSource(t *testing.T) {
	pol := mustParse(t, curationPolicy)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name              string
		f                 Facts
		source            bool
		verdict, effected Verdict
	}{
		{"blocked source", Facts{Upstream: "docker.io", Repository: "library/nginx", Reference: "latest", Now: now, ScanState: ScanDone}, true, Block, Block},
		{"blocked source, no time", Facts{Upstream: "docker.io", Repository: "library/nginx"}, true, Block, Block},
		{"warn mode", Facts{Upstream: "quay.io", Repository: "x/y", Now: now, ScanState: ScanDone}, true, Block, Warn},
		// Tag rules judge requests, not digests: a stored verdict made
		// when the digest was last pulled by a tag must not refuse it by
		// digest.
		{"blocked tag", Facts{Upstream: "ghcr.io", Repository: "acme/api", Reference: "latest", CurrentTag: "latest", Now: now, ScanState: ScanDone}, false, Allow, Allow},
		{"require digest", Facts{Upstream: "ghcr.io", Repository: "acme/prod/api", Reference: "1.0", CurrentTag: "1.0", Now: now, ScanState: ScanDone}, false, Allow, Allow},
	} {
		d := pol.Evaluate(c.f)
		if d.Has(CodeSourceBlocked) != c.source || d.Verdict != c.verdict || d.Effective != c.effected {
			t.Errorf("%s: %+v", c.name, d)
			continue
		}
		if c.source {
			r := d.Reasons[0]
			if r.Code != CodeSourceBlocked || r.Data["source"] != SourceBlock || r.Data["rule"] != d.Rule || !strings.Contains(d.Message(0), "not an approved source") {
				t.Errorf("%s: first reason %+v", c.name, r)
			}
			if len(d.Unwaivable()) == 0 && d.Verdict == Block {
				t.Errorf("%s: a refused source is waivable", c.name)
			}
		}
	}
}
