package policy

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// t0 is "now" in every test; never modified.
var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func mustParse(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := Parse([]byte(src))
	if err != nil {
		t.Fatalf("Parse:\n%s\nerror: %v", src, err)
	}
	return p
}

// cleanFacts describe an image every rule in these tests allows.
func cleanFacts() Facts {
	return Facts{
		Upstream: "ghcr.io", Repository: "acme/api", Reference: "1.4.2", Digest: "sha256:aaaa",
		Signature:      SignatureFacts{State: SignatureVerified, Signers: []Signer{{Issuer: "https://issuer", Subject: "ci@acme"}}},
		Created:        t0.Add(-10 * day),
		Tags:           []string{"1.4.1", "1.4.2", "latest"},
		CurrentTag:     "1.4.2",
		CompressedSize: 100 << 20,
		LayerCount:     5,
		ScanState:      ScanDone,
		DBBuiltAt:      t0.Add(-time.Hour),
		Now:            t0,
	}
}

func codes(d Decision) []string {
	var out []string
	for _, r := range d.Reasons {
		out = append(out, r.Code)
	}
	return out
}

func TestEvaluateRuleTypesAndModes(t *testing.T) {
	// What each mode makes of each verdict, written out rather than
	// computed so the test does not trust Mode.apply.
	effective := map[Mode]map[Verdict]Verdict{
		ModeEnforce: {Allow: Allow, Warn: Warn, Block: Block},
		ModeWarn:    {Allow: Allow, Warn: Warn, Block: Warn},
		ModeAudit:   {Allow: Allow, Warn: Allow, Block: Allow},
	}
	keyless := &SignatureRule{Required: true, RequireTlog: true,
		Identities: []Identity{{Issuer: "https://issuer", SubjectRegexp: "^ci@acme"}}}
	withKey := &SignatureRule{Required: true, Keys: []string{"/keys/a.pub"}}
	vulns := func(v *VulnRule, xs ...Vulnerability) (Rule, func(*Facts)) {
		return Rule{Vulnerabilities: v}, func(f *Facts) { f.Vulnerabilities = xs }
	}
	high := Vulnerability{ID: "CVE-1", Package: "openssl", InstalledVersion: "3.0.1", FixedVersions: []string{"3.0.8"}, Severity: SeverityHigh}
	medium := Vulnerability{ID: "CVE-2", Package: "zlib", InstalledVersion: "1.2", FixedVersions: []string{"1.3"}, Severity: SeverityMedium}
	unfixed := Vulnerability{ID: "CVE-3", Package: "bash", InstalledVersion: "5.1", Severity: SeverityCritical}
	unknown := Vulnerability{ID: "CVE-4", Package: "x", InstalledVersion: "1", Severity: "whatever"}

	type tc struct {
		name  string
		rule  Rule
		facts func(*Facts)
		want  Verdict
		codes []string
	}
	cases := []tc{
		{name: "no checks", rule: Rule{}, want: Allow},

		{name: "signature verified by an allowed identity", rule: Rule{Signature: keyless}, want: Allow},
		{name: "signature verified, signers not recorded", rule: Rule{Signature: keyless},
			facts: func(f *Facts) { f.Signature.Signers = nil }, want: Allow},
		{name: "signature verified by an identity the rule no longer trusts", rule: Rule{Signature: keyless},
			facts: func(f *Facts) { f.Signature.Signers = []Signer{{Issuer: "https://issuer", Subject: "eve@evil"}} },
			want:  Block, codes: []string{CodeSignatureInvalid}},
		{name: "signature by key under a key rule", rule: Rule{Signature: withKey},
			facts: func(f *Facts) { f.Signature.Signers = []Signer{{KeyID: "abc"}} }, want: Allow},
		{name: "keyless signer under a key-only rule", rule: Rule{Signature: withKey},
			want: Block, codes: []string{CodeSignatureInvalid}},
		{name: "unsigned", rule: Rule{Signature: keyless},
			facts: func(f *Facts) { f.Signature = SignatureFacts{State: SignatureUnsigned} },
			want:  Block, codes: []string{CodeUnsigned}},
		{name: "signature invalid", rule: Rule{Signature: keyless},
			facts: func(f *Facts) { f.Signature = SignatureFacts{State: SignatureInvalid, Error: "no matching signatures"} },
			want:  Block, codes: []string{CodeSignatureInvalid}},
		{name: "unsigned but not required", rule: Rule{Signature: &SignatureRule{Keys: []string{"k"}}},
			facts: func(f *Facts) { f.Signature = SignatureFacts{State: SignatureUnsigned} }, want: Allow},
		{name: "verification error, on_error warn", rule: Rule{Signature: keyless, OnError: Warn},
			facts: func(f *Facts) { f.Signature = SignatureFacts{State: SignatureError, Error: "trusted root unreadable"} },
			want:  Warn, codes: []string{CodeEvaluationError}},
		{name: "signature not checked, then warn", rule: Rule{Signature: keyless, OnUnscanned: OnUnscanned{Then: Warn}},
			facts: func(f *Facts) { f.Signature = SignatureFacts{State: SignatureNotChecked} },
			want:  Warn, codes: []string{CodeUnscanned}},

		{name: "fresh enough", rule: Rule{Freshness: &FreshnessRule{MaxAge: 365 * day, TooOld: Block}}, want: Allow},
		{name: "too old, block", rule: Rule{Freshness: &FreshnessRule{MaxAge: 365 * day, TooOld: Block}},
			facts: func(f *Facts) { f.Created = t0.Add(-400 * day) }, want: Block, codes: []string{CodeTooOld}},
		{name: "too old, warn", rule: Rule{Freshness: &FreshnessRule{MaxAge: 365 * day, TooOld: Warn}},
			facts: func(f *Facts) { f.Created = t0.Add(-400 * day) }, want: Warn, codes: []string{CodeTooOld}},
		{name: "reproducible build (epoch created) has no age", rule: Rule{Freshness: &FreshnessRule{MaxAge: day, TooOld: Block}},
			facts: func(f *Facts) { f.Created = time.Unix(0, 0) }, want: Allow},
		{name: "newer patch, warn", rule: Rule{Freshness: &FreshnessRule{NewerPatchAvailable: Warn}},
			facts: func(f *Facts) { f.Tags = append(f.Tags, "1.4.7") }, want: Warn, codes: []string{CodeNewerRelease}},
		{name: "newer release, block", rule: Rule{Freshness: &FreshnessRule{NewerReleaseAvailable: Block}},
			facts: func(f *Facts) { f.Tags = append(f.Tags, "2.0.0") }, want: Block, codes: []string{CodeNewerRelease}},
		{name: "newer minor does not trip newer_patch", rule: Rule{Freshness: &FreshnessRule{NewerPatchAvailable: Block}},
			facts: func(f *Facts) { f.Tags = append(f.Tags, "1.5.0") }, want: Allow},
		{name: "pulled by digest: no tag to compare", rule: Rule{Freshness: &FreshnessRule{NewerReleaseAvailable: Block}},
			facts: func(f *Facts) { f.Tags = append(f.Tags, "2.0.0"); f.CurrentTag = "" }, want: Allow},

		{name: "size within limits", rule: Rule{Size: &SizeRule{MaxCompressed: 2 << 30, MaxLayers: 60}}, want: Allow},
		{name: "too large", rule: Rule{Size: &SizeRule{MaxCompressed: 2 << 30}},
			facts: func(f *Facts) { f.CompressedSize = 3 << 30 }, want: Block, codes: []string{CodeTooLarge}},
		{name: "too many layers", rule: Rule{Size: &SizeRule{MaxLayers: 60}},
			facts: func(f *Facts) { f.LayerCount = 61 }, want: Block, codes: []string{CodeTooManyLayers}},
	}
	add := func(name string, want Verdict, cs []string, v *VulnRule, xs ...Vulnerability) {
		r, f := vulns(v, xs...)
		cases = append(cases, tc{name: name, rule: r, facts: f, want: want, codes: cs})
	}
	add("no vulnerabilities", Allow, nil, &VulnRule{Block: SeverityHigh, Warn: SeverityMedium})
	add("MEDIUM warns", Warn, []string{CodeVulnerable}, &VulnRule{Block: SeverityHigh, Warn: SeverityMedium}, medium)
	add("HIGH blocks, MEDIUM warns", Block, []string{CodeVulnerable, CodeVulnerable}, &VulnRule{Block: SeverityHigh, Warn: SeverityMedium}, high, medium)
	add("below both thresholds", Allow, nil, &VulnRule{Block: SeverityCritical, Warn: SeverityHigh}, medium)
	add("fixable_only skips the unfixable", Allow, nil, &VulnRule{Block: SeverityHigh, FixableOnly: true}, unfixed)
	add("unfixable counts without fixable_only", Block, []string{CodeVulnerable}, &VulnRule{Block: SeverityHigh}, unfixed)
	add("UNKNOWN threshold catches unrated", Block, []string{CodeVulnerable}, &VulnRule{Block: SeverityUnknown}, unknown)
	add("unrated is below LOW", Allow, nil, &VulnRule{Block: SeverityLow}, unknown)

	cases = append(cases, tc{
		name:  "most severe reason wins",
		rule:  Rule{Vulnerabilities: &VulnRule{Warn: SeverityMedium}, Size: &SizeRule{MaxLayers: 1}},
		facts: func(f *Facts) { f.Vulnerabilities = []Vulnerability{medium} },
		want:  Block, codes: []string{CodeTooManyLayers, CodeVulnerable}, // block first
	})

	for _, c := range cases {
		for _, mode := range []Mode{ModeEnforce, ModeWarn, ModeAudit} {
			t.Run(c.name+"/"+string(mode), func(t *testing.T) {
				r := c.rule
				r.Mode = mode
				f := cleanFacts()
				if c.facts != nil {
					c.facts(&f)
				}
				d := Evaluate(r, f)
				if d.Verdict != c.want || d.Effective != effective[mode][c.want] || d.Mode != mode {
					t.Errorf("verdict %s effective %s mode %s, want %s %s %s; reasons %+v",
						d.Verdict, d.Effective, d.Mode, c.want, effective[mode][c.want], mode, d.Reasons)
				}
				if !slices.Equal(codes(d), c.codes) {
					t.Errorf("codes %v, want %v", codes(d), c.codes)
				}
			})
		}
	}
}

func TestEvaluateZeroValuesAreSafe(t *testing.T) {
	// A hand-built rule that leaves mode, on_error and then empty gets the
	// documented defaults (enforce, block, block), never a silent allow.
	f := cleanFacts()
	f.ScanState = ScanFailed
	d := Evaluate(Rule{Vulnerabilities: &VulnRule{Block: SeverityHigh}}, f)
	if d.Verdict != Block || d.Effective != Block || d.Mode != ModeEnforce {
		t.Errorf("scan failed: %+v", d)
	}
	f = cleanFacts()
	f.ScanState = ScanPending
	if d := Evaluate(Rule{Vulnerabilities: &VulnRule{Block: SeverityHigh}}, f); d.Verdict != Block {
		t.Errorf("pending: %+v", d)
	}
}

func TestEvaluateNeedsNow(t *testing.T) {
	f := cleanFacts()
	f.Now = time.Time{}
	d := Evaluate(Rule{OnError: Allow}, f)
	if !d.Has(CodeEvaluationError) || d.Verdict != Allow {
		t.Errorf("allow on error: %+v", d)
	}
	if d := Evaluate(Rule{}, f); d.Verdict != Block {
		t.Errorf("default on error: %+v", d)
	}
}

func TestEvaluateIsDeterministic(t *testing.T) {
	p := mustParse(t, exampleYAML(t))
	f := cleanFacts()
	f.Vulnerabilities = []Vulnerability{
		{ID: "CVE-9", Severity: SeverityHigh, FixedVersions: []string{"2"}},
		{ID: "CVE-8", Severity: SeverityCritical, FixedVersions: []string{"2"}},
	}
	f.Signature = SignatureFacts{State: SignatureUnsigned}
	a := p.Evaluate(f)
	slices.Reverse(f.Vulnerabilities)
	b := p.Evaluate(f)
	if a.Message(0) != b.Message(0) || a.Verdict != b.Verdict {
		t.Errorf("order of findings changed the decision:\n%s\n%s", a.Message(0), b.Message(0))
	}
	if !strings.HasPrefix(a.Message(0), "2 fixable vulnerabilities: 1 CRITICAL and 1 HIGH (CVE-8") {
		t.Errorf("message = %q", a.Message(0))
	}
}
