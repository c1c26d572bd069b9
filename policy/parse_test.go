package policy

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func exampleYAML(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseExample(t *testing.T) {
	p := mustParse(t, exampleYAML(t))
	var names []string
	for _, r := range p.Rules {
		names = append(names, r.Name)
	}
	if want := []string{"acme", "acme-legacy", "docker-official", "k8s", "baseline"}; !cmp.Equal(names, want) {
		t.Fatalf("rules %v, want %v", names, want)
	}
	want := Rule{
		Name:  "acme",
		Match: Match{Upstreams: []string{"ghcr.io"}, Repositories: []string{"acme/**"}},
		Mode:  ModeEnforce,
		Signature: &SignatureRule{
			Required: true,
			Identities: []Identity{{
				Issuer:        "https://token.actions.githubusercontent.com",
				SubjectRegexp: `^https://github\.com/acme/[^/]+/\.github/workflows/release\.yml@refs/tags/v`,
			}},
			RequireTlog: true,
			TrustedRoot: "/etc/portcullis/trusted_root.json",
		},
		Freshness: &FreshnessRule{MaxAge: 180 * day, TooOld: Warn, NewerPatchAvailable: Warn},
		Size:      &SizeRule{MaxCompressed: 2 << 30, MaxLayers: 60},
		Vulnerabilities: &VulnRule{
			Block: SeverityHigh, Warn: SeverityMedium, FixableOnly: true, Grace: 7 * day, MaxDBAge: 3 * day,
			Allow: []AllowEntry{{
				ID:      "CVE-2024-0001",
				Expires: time.Date(2027, 1, 31, 0, 0, 0, 0, time.UTC),
				Reason:  "not reachable; openssl only used for hashing (SEC-123)",
			}},
		},
		Malware:     Block,
		OnUnscanned: OnUnscanned{Wait: 30 * time.Second, Then: Block},
		OnError:     Block,
	}
	if diff := cmp.Diff(want, p.Rules[0]); diff != "" {
		t.Errorf("rule acme (-want +got):\n%s", diff)
	}
	// Defaults fill what acme-legacy leaves out.
	legacy := p.Rules[1]
	if legacy.Mode != ModeEnforce || legacy.OnUnscanned != (OnUnscanned{Wait: 30 * time.Second, Then: Block}) || !legacy.Signature.RequireTlog {
		t.Errorf("acme-legacy defaults: %+v", legacy)
	}

	for _, c := range []struct{ upstream, repo, rule string }{
		{"ghcr.io", "acme/api", "acme"},
		{"ghcr.io", "acme/team/api", "acme"},
		{"ghcr.io", "acme/legacy-billing", "acme-legacy"},
		{"ghcr.io", "someone/else", "baseline"},
		{"docker.io", "library/alpine", "docker-official"},
		{"docker.io", "bitnami/redis", "baseline"},
		{"registry.k8s.io", "kube-apiserver", "k8s"},
	} {
		if got := p.Select(c.upstream, c.repo).Name; got != c.rule {
			t.Errorf("Select(%s, %s) = %s, want %s", c.upstream, c.repo, got, c.rule)
		}
	}

	// The example's modes at work on one vulnerable, unsigned image.
	f := cleanFacts()
	f.Signature = SignatureFacts{State: SignatureUnsigned}
	f.Vulnerabilities = []Vulnerability{{ID: "CVE-2025-1", Package: "openssl", InstalledVersion: "3.0.1",
		FixedVersions: []string{"3.0.8"}, Severity: SeverityCritical}}
	for _, c := range []struct {
		upstream, repo     string
		verdict, effective Verdict
	}{
		{"ghcr.io", "acme/api", Block, Block},
		{"docker.io", "library/alpine", Block, Warn}, // mode warn
		{"registry.k8s.io", "pause", Block, Allow},   // mode audit
		{"quay.io", "someone/app", Block, Block},     // baseline
		{"ghcr.io", "acme/legacy-app", Block, Block}, // unsigned
	} {
		f.Upstream, f.Repository = c.upstream, c.repo
		d := p.Evaluate(f)
		if d.Verdict != c.verdict || d.Effective != c.effective || d.PolicyVersion != p.Version() {
			t.Errorf("%s/%s: %s/%s, want %s/%s (%s)", c.upstream, c.repo, d.Verdict, d.Effective, c.verdict, c.effective, d.Message(0))
		}
	}
}

func TestDefault(t *testing.T) {
	p := Default()
	r := p.Select("docker.io", "library/alpine")
	if r.Name != "default" || r.Mode != ModeWarn || r.OnUnscanned.Wait != 0 || r.OnUnscanned.Then != Allow {
		t.Fatalf("default rule %+v", r)
	}
	f := cleanFacts()
	f.Vulnerabilities = []Vulnerability{{ID: "CVE-1", Severity: SeverityCritical}, {ID: "CVE-2", Severity: SeverityHigh}}
	d := p.Evaluate(f)
	if d.Verdict != Block || d.Effective != Warn {
		t.Errorf("CRITICAL under the default policy: %s/%s", d.Verdict, d.Effective)
	}
	f.DBBuiltAt = time.Time{}
	if d := p.Evaluate(f); d.Effective != Warn || d.Message(0) != "vulnerability database missing" {
		t.Errorf("no database under the default policy (tagged, not allowed silently): %+v", d)
	}
	if Default().Version() != p.Version() {
		t.Error("Default is not stable")
	}
}

func TestVersion(t *testing.T) {
	a := mustParse(t, "rules:\n  - name: x\n    mode: warn\n    size: {max_layers: 60, max_compressed: 2GiB}\n")
	// Comments, layout, key order and spelling of equal values do not
	// change the version...
	b := mustParse(t, `# a comment
rules:
  - size:
      max_compressed: 2048MiB
      max_layers: 60
    mode: WARN
    name: x
`)
	if a.Version() != b.Version() {
		t.Errorf("same content, different versions: %s %s", a.Version(), b.Version())
	}
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(a.Version()) {
		t.Errorf("version %q", a.Version())
	}
	// ...content does.
	c := mustParse(t, "rules:\n  - name: x\n    mode: warn\n    size: {max_layers: 61, max_compressed: 2GiB}\n")
	if a.Version() == c.Version() {
		t.Error("different content, same version")
	}
	// A hand-built policy hashes the same way.
	if (&Policy{Rules: a.Rules}).Version() != a.Version() {
		t.Error("hand-built policy has a different version")
	}
	if (&Policy{}).Version() != mustParse(t, "rules: []").Version() {
		t.Error("empty policies differ")
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ src, want string }{
		{"rules:\n  - vulnerabilities:\n      block: SEVERE\n",
			`line 3: rules[0].vulnerabilities.block: unknown severity "SEVERE" (want CRITICAL, HIGH, MEDIUM, LOW or UNKNOWN)`},
		{"rule: []\n", `line 1: unknown key "rule" (want one of rules, vex)`},
		{"rules:\n  - mathc: {}\n",
			`line 2: rules[0]: unknown key "mathc" (want one of freshness, malware, match, mode, name, on_error, on_unscanned, reason, secrets, signature, size, source, tags, vulnerabilities)`},
		{"rules:\n  - vulnerabilities:\n      block: HIGH\n      grace: 7 days\n",
			`line 4: rules[0].vulnerabilities.grace: invalid duration "7 days": want a whole number with a unit s, m, h, d (24h) or w (7d), e.g. 30s or 365d`},
		{"rules:\n  - on_unscanned: {wait: 30, then: allow}\n",
			`line 2: rules[0].on_unscanned.wait: invalid duration "30": want a whole number with a unit s, m, h, d (24h) or w (7d), e.g. 30s or 365d`},
		{"rules:\n  - freshness: {max_age: 1y}\n",
			`line 2: rules[0].freshness.max_age: invalid duration "1y": want a whole number with a unit s, m, h, d (24h) or w (7d), e.g. 30s or 365d`},
		{"rules:\n  - size:\n      max_compressed: 2GB2\n",
			`line 3: rules[0].size.max_compressed: invalid size "2GB2": want a number with an optional unit B, kB, MB, GB, TB, KiB, MiB, GiB or TiB, e.g. 2GiB`},
		{"rules:\n  - size: {max_layers: sixty}\n", `line 2: rules[0].size.max_layers: want a number of layers above 0, got "sixty"`},
		{"rules:\n  - mode: dryrun\n", `line 2: rules[0].mode: unknown mode "dryrun" (want enforce, warn or audit)`},
		{"rules:\n  - on_error: warnn\n", `line 2: rules[0].on_error: unknown verdict "warnn" (want allow, warn or block)`},
		{"rules:\n  - freshness: {newer_patch_available: allow}\n",
			`line 2: rules[0].freshness.newer_patch_available: unknown verdict "allow" (want warn or block)`},
		{"rules:\n  - mode: warn\n    mode: audit\n", `line 3: rules[0]: duplicate key "mode"`},
		{"rules:\n  - signature:\n      required: true\n      identities:\n        - issuer: https://accounts.google.com\n",
			`line 5: rules[0].signature.identities[0]: needs subject or subject_regexp`},
		{"rules:\n  - signature:\n      identities:\n        - {issuer: x, issuer_regexp: y, subject: z}\n",
			`line 4: rules[0].signature.identities[0]: set issuer or issuer_regexp, not both`},
		{"rules:\n  - signature:\n      required: true\n      identities:\n        - {issuer: x, subject_regexp: \"([\"}\n",
			`line 5: rules[0].signature.identities[0].subject_regexp: invalid regular expression: missing closing ]: "["`},
		{"rules:\n  - signature: {required: true}\n",
			`line 2: rules[0].signature: a required signature needs keys or identities to verify against`},
		{"rules:\n  - signature: {keys: [\"-----BEGIN PUBLIC KEY-----\"]}\n",
			`line 2: rules[0].signature.keys: want the path of a PEM file, not the key itself`},
		{"rules:\n  - vulnerabilities:\n      block: HIGH\n      allow:\n        - {id: CVE-1, expires: 31/01/2027}\n",
			`line 5: rules[0].vulnerabilities.allow[0].expires: invalid date "31/01/2027": want YYYY-MM-DD or an RFC 3339 time`},
		{"rules:\n  - vulnerabilities: {block: HIGH, allow: [{expires: 2027-01-01}]}\n",
			`line 2: rules[0].vulnerabilities.allow[0]: needs an id (a vulnerability ID or alias, e.g. CVE-2024-0001)`},
		{"rules:\n  - vulnerabilities: {block: HIGH, warn: CRITICAL}\n",
			`line 2: rules[0].vulnerabilities.warn: CRITICAL is not below block (HIGH), so it would never warn`},
		{"rules:\n  - vulnerabilities: {block: HIGH, fixable_only: yes}\n",
			`line 2: rules[0].vulnerabilities.fixable_only: want true or false, got "yes"`},
		{"rules:\n  - vulnerabilities: {}\n", `line 2: rules[0].vulnerabilities: checks nothing: set block or warn to a severity`},
		{"rules:\n  - freshness: {too_old: warn}\n", `line 2: rules[0].freshness.too_old: has no effect without max_age`},
		{"rules:\n  - match: {upstreams: [ghcr.io]}\n  - match: {upstreams: [GHCR.io]}\n",
			`line 3: rules[1].match: matches exactly what rules[0] matches, so it would never be selected`},
		{"rules:\n  - {name: a, match: {upstreams: [x]}}\n  - {name: a, match: {upstreams: [y]}}\n",
			`line 3: rules[1].name: name "a" is already used by rules[0]`},
		{"rules:\n  - match: {upstreams: ghcr.io}\n", `line 2: rules[0].match.upstreams: want a list of strings, got "ghcr.io"`},
		{"rules:\n  - match: {repositories: [\"a/***\"]}\n",
			`line 2: rules[0].match.repositories: pattern "a/***": use * within a path segment or ** across segments`},
		{"rules:\n  - match: ~\n", `line 2: rules[0].match: want a mapping with keys repositories, upstreams, got nothing`},
		{"rules:\n  - <<: {mode: warn}\n",
			`line 2: rules[0]: unknown key "<<" (want one of freshness, malware, match, mode, name, on_error, on_unscanned, reason, secrets, signature, size, source, tags, vulnerabilities)`},
		{"rules: {name: x}\n", `line 1: rules: want a list of rules, got a mapping`},
		{"- a\n- b\n", `line 1: want a mapping with keys rules, vex, got a list`},
		{"rules: [\n", `line 1: did not find expected node content`},
		{"rules:\n\t- mode: warn\n", `line 2: found character that cannot start any token (YAML is indented with spaces, not tabs)`},
		{"rules: []\n---\nrules: []\n", `line 2: more than one YAML document; a policy file holds one`},
		{"", `empty policy: want a mapping with a rules list`},
		{"# only a comment\n", `empty policy: want a mapping with a rules list`},
		{"{}\n", `line 1: missing key "rules"`},
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

func TestParseReportsEveryError(t *testing.T) {
	_, err := Parse([]byte(`rules:
  - mode: dryrun
    vulnerabilities: {block: SEVERE}
  - on_error: maybe
    match: {upstreams: [quay.io]}
`))
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("want 3 errors, got %v", err)
	}
	var one *Error
	if !errors.As(err, &one) || one.Line != 2 || one.Path != "rules[0].mode" {
		t.Errorf("first error %+v", one)
	}
	if lines := strings.Count(err.Error(), "\n") + 1; lines != 3 {
		t.Errorf("one line per error, got:\n%s", err)
	}
}

func TestParseAliases(t *testing.T) {
	p := mustParse(t, `rules:
  - name: a
    match: {upstreams: [ghcr.io]}
    signature: &sig
      required: true
      identities: [{issuer: https://i, subject: s}]
  - name: b
    match: {upstreams: [quay.io]}
    signature: *sig
`)
	if !cmp.Equal(p.Rules[0].Signature, p.Rules[1].Signature) {
		t.Errorf("alias not followed: %+v", p.Rules[1].Signature)
	}
}

func TestUnits(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"0": 0, "30s": 30 * time.Second, "7d": 7 * day, "365d": 365 * day, "2w": 14 * day, "1h30m": 90 * time.Minute, "1d12h": 36 * time.Hour,
	} {
		if got, err := parseDuration(s); err != nil || got != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "7", "d", "7 d", "-7d", "1.5d", "1y", "1mo", "7dd", "10000000000w"} {
		if _, err := parseDuration(s); err == nil {
			t.Errorf("parseDuration(%q) succeeded", s)
		}
	}
	for d, want := range map[time.Duration]string{
		0: "0s", 365 * day: "365d", 14 * day: "2w", 10 * day: "10d", 90 * time.Minute: "1h30m", 30 * time.Second: "30s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for s, want := range map[string]int64{
		"2GiB": 2 << 30, "2gib": 2 << 30, "2Gi": 2 << 30, "500MB": 500e6, "1.5GiB": 3 << 29, "1048576": 1 << 20, "10 KiB": 10 << 10, "1B": 1,
	} {
		if got, err := parseSize(s); err != nil || got != want {
			t.Errorf("parseSize(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "GiB", "2XB", "-1GiB", "1e9", "2GiB2", "99999999999TiB", "1.2.3MB"} {
		if _, err := parseSize(s); err == nil {
			t.Errorf("parseSize(%q) succeeded", s)
		}
	}
	for n, want := range map[int64]string{512: "512 B", 2 << 30: "2 GiB", 2576980378: "2.4 GiB", 1536: "1.5 KiB"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
