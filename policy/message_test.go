package policy

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// issueExample builds the decision the issue uses as its example message.
func issueExample(t *testing.T) Decision {
	t.Helper()
	p := mustParse(t, `rules:
  - match: {upstreams: [ghcr.io], repositories: ["acme/**"]}
    signature:
      required: true
      identities: [{issuer: https://token.actions.githubusercontent.com, subject_regexp: "^https://github.com/acme/"}]
    freshness: {newer_release_available: warn}
    vulnerabilities: {block: HIGH, fixable_only: true}
`)
	f := cleanFacts()
	f.Signature = SignatureFacts{State: SignatureInvalid}
	f.Tags = []string{"1.4.2", "1.4.7", "latest"}
	f.Vulnerabilities = []Vulnerability{
		{ID: "CVE-2024-0001", Package: "openssl", InstalledVersion: "3.0.1", FixedVersions: []string{"3.0.8"}, Severity: SeverityHigh, Score: 8.1},
		{ID: "CVE-2024-0002", Package: "libcurl", InstalledVersion: "7.80.0", FixedVersions: []string{"7.88.1"}, Severity: SeverityHigh, Score: 7.5},
		{ID: "CVE-2024-0003", Package: "bash", InstalledVersion: "5.1", Severity: SeverityHigh}, // no fix: not counted
	}
	return p.Evaluate(f)
}

func TestMessageContent(t *testing.T) {
	d := issueExample(t)
	want := "2 fixable HIGH vulnerabilities (CVE-2024-0001 openssl 3.0.1 → 3.0.8, CVE-2024-0002 libcurl 7.80.0 → 7.88.1); " +
		"not signed by an allowed identity; newer release 1.4.7 available"
	if got := d.Message(0); got != want {
		t.Errorf("Message(0)\n got %q\nwant %q", got, want)
	}
	if d.Verdict != Block || d.Effective != Block || d.Rule != "rules[0]" {
		t.Errorf("decision %+v", d)
	}
	nr := d.Reasons[2]
	if nr.Code != CodeNewerRelease || nr.Data["suggested"] != "1.4.7" || nr.Data["current"] != "1.4.2" {
		t.Errorf("newer release reason %+v", nr)
	}
	if got := (Decision{Verdict: Allow}).Message(80); got != "" {
		t.Errorf("no reasons: %q", got)
	}
}

func TestMessageTruncation(t *testing.T) {
	d := issueExample(t)
	for _, c := range []struct {
		max  int
		want string
	}{
		{150, "2 fixable HIGH vulnerabilities (CVE-2024-0001 openssl 3.0.1 → 3.0.8, …); not signed by an allowed identity; newer release 1.4.7 available"},
		{110, "2 fixable HIGH vulnerabilities; not signed by an allowed identity; newer release 1.4.7 available"},
		{80, "2 fixable HIGH vulnerabilities; not signed by an allowed identity; +1 more"},
		{45, "2 fixable HIGH vulnerabilities; +2 more"},
		{30, "2 fixable HIGH vulnerabilities"},
		{20, "2 fixable HIGH vu…"},
		{2, "2 "},
	} {
		if got := d.Message(c.max); got != c.want {
			t.Errorf("Message(%d)\n got %q\nwant %q", c.max, got, c.want)
		}
	}
	// Whatever the limit: within it, valid UTF-8, and the most severe
	// reason's headline survives once it fits at all.
	full := d.Message(0)
	for max := 1; max <= len(full)+2; max++ {
		got := d.Message(max)
		if len(got) > max || !utf8.ValidString(got) {
			t.Fatalf("Message(%d) = %q (%d bytes)", max, got, len(got))
		}
		if max >= len("2 fixable HIGH vulnerabilities") && !strings.HasPrefix(got, "2 fixable HIGH vulnerabilities") {
			t.Fatalf("Message(%d) = %q lost the first headline", max, got)
		}
	}
}

func TestMessageManyVulnerabilities(t *testing.T) {
	f := cleanFacts()
	for i := range 12 {
		f.Vulnerabilities = append(f.Vulnerabilities, Vulnerability{
			ID: fmt.Sprintf("CVE-2024-%04d", i), Package: "pkg", InstalledVersion: "1", FixedVersions: []string{"2"},
			Severity: SeverityCritical,
		})
	}
	// The same vulnerability in a second package is still one vulnerability.
	f.Vulnerabilities = append(f.Vulnerabilities, Vulnerability{ID: "CVE-2024-0000", Package: "pkg2", Severity: SeverityCritical})
	d := Evaluate(Rule{Vulnerabilities: &VulnRule{Block: SeverityHigh}}, f)
	want := "12 CRITICAL vulnerabilities (CVE-2024-0000 pkg 1 → 2, CVE-2024-0001 pkg 1 → 2, CVE-2024-0002 pkg 1 → 2, " +
		"CVE-2024-0003 pkg 1 → 2, CVE-2024-0004 pkg 1 → 2, +7 more)"
	if got := d.Message(0); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if n := len(d.Reasons[0].Data["vulnerabilities"].([]map[string]any)); n != 13 {
		t.Errorf("data lists %d findings, want all 13", n)
	}
	// Shortening never ends a list on the count alone.
	if got := d.Message(90); got != "12 CRITICAL vulnerabilities (CVE-2024-0000 pkg 1 → 2, CVE-2024-0001 pkg 1 → 2, …)" {
		t.Errorf("Message(90) = %q", got)
	}
}

func TestMessageMixedSeverities(t *testing.T) {
	f := cleanFacts()
	f.Vulnerabilities = []Vulnerability{
		{ID: "CVE-B", Package: "b", InstalledVersion: "1", Severity: SeverityHigh},
		{ID: "CVE-A", Package: "a", InstalledVersion: "1", Severity: SeverityCritical},
		{ID: "CVE-C", Package: "c", InstalledVersion: "1", Severity: SeverityHigh},
	}
	d := Evaluate(Rule{Vulnerabilities: &VulnRule{Block: SeverityHigh}}, f)
	want := "3 vulnerabilities: 1 CRITICAL and 2 HIGH (CVE-A a 1, CVE-B b 1, CVE-C c 1)"
	if got := d.Message(0); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestMessageOtherReasons(t *testing.T) {
	f := cleanFacts()
	f.Created = t0.Add(-400 * day)
	f.CompressedSize = 2576980378 // 2.4 GiB
	f.LayerCount = 73
	f.Tags = append(f.Tags, "1.4.9", "1.6.0")
	r := Rule{
		Freshness: &FreshnessRule{MaxAge: 365 * day, TooOld: Warn, NewerPatchAvailable: Warn, NewerReleaseAvailable: Warn},
		Size:      &SizeRule{MaxCompressed: 2 << 30, MaxLayers: 60},
	}
	want := "compressed size 2.4 GiB exceeds 2 GiB; 73 layers exceed the limit of 60; " +
		"image is 400 days old (built 2025-04-27, max 365d); newer release 1.6.0 available (patch 1.4.9)"
	if got := Evaluate(r, f).Message(0); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
