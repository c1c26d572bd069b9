package policy

import (
	"strings"
	"testing"
	"time"
)

func vulnFacts(xs ...Vulnerability) Facts {
	f := cleanFacts()
	f.Vulnerabilities = xs
	return f
}

func TestAllowlist(t *testing.T) {
	x := Vulnerability{ID: "GHSA-aaaa-bbbb-cccc", Aliases: []string{"CVE-2024-0001"}, Package: "openssl",
		InstalledVersion: "3.0.1", FixedVersions: []string{"3.0.8"}, Severity: SeverityHigh}
	for _, c := range []struct {
		name    string
		entries []AllowEntry
		want    Verdict
		msg     string // substring of the message, if any
	}{
		{"no entry", nil, Block, "1 HIGH vulnerability (GHSA-aaaa-bbbb-cccc openssl 3.0.1 → 3.0.8)"},
		{"by id", []AllowEntry{{ID: "GHSA-aaaa-bbbb-cccc", Expires: t0.Add(day)}}, Allow, ""},
		{"by alias", []AllowEntry{{ID: "CVE-2024-0001", Expires: t0.Add(day)}}, Allow, ""},
		{"case-insensitive", []AllowEntry{{ID: "cve-2024-0001"}}, Allow, ""},
		{"never expires", []AllowEntry{{ID: "CVE-2024-0001"}}, Allow, ""},
		{"other id", []AllowEntry{{ID: "CVE-2024-9999"}}, Block, ""},
		{"expired", []AllowEntry{{ID: "CVE-2024-0001", Expires: time.Date(2026, 5, 31, 0, 0, 0, 0, time.UTC)}},
			Block, "GHSA-aaaa-bbbb-cccc openssl 3.0.1 → 3.0.8 [allowlist entry expired 2026-05-31]"},
		{"expires exactly now", []AllowEntry{{ID: "CVE-2024-0001", Expires: t0}}, Block, "expired 2026-06-01T12:00Z"},
		{"one expired, one current", []AllowEntry{
			{ID: "CVE-2024-0001", Expires: t0.Add(-day)},
			{ID: "GHSA-aaaa-bbbb-cccc", Expires: t0.Add(day)},
		}, Allow, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := Evaluate(Rule{Vulnerabilities: &VulnRule{Block: SeverityHigh, Allow: c.entries}}, vulnFacts(x))
			if d.Verdict != c.want {
				t.Fatalf("verdict %s, want %s: %s", d.Verdict, c.want, d.Message(0))
			}
			if !strings.Contains(d.Message(0), c.msg) {
				t.Errorf("message %q lacks %q", d.Message(0), c.msg)
			}
		})
	}
	// The date form in a file means 00:00 UTC of that day.
	p := mustParse(t, `rules:
  - vulnerabilities:
      block: HIGH
      allow: [{id: CVE-2024-0001, expires: 2026-06-02, reason: test}]
`)
	f := vulnFacts(x)
	for _, c := range []struct {
		now  time.Time
		want Verdict
	}{
		{time.Date(2026, 6, 1, 23, 59, 59, 0, time.UTC), Allow},
		{time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC), Block},
	} {
		f.Now = c.now
		if d := p.Evaluate(f); d.Verdict != c.want {
			t.Errorf("at %s: %s, want %s", c.now, d.Verdict, c.want)
		}
	}
}

func TestGrace(t *testing.T) {
	published := t0.Add(-2 * day)
	x := Vulnerability{ID: "CVE-1", Package: "openssl", InstalledVersion: "3.0.1", FixedVersions: []string{"3.0.8"},
		Severity: SeverityCritical, Published: published}
	rule := Rule{Vulnerabilities: &VulnRule{Block: SeverityHigh, Grace: 7 * day}}
	for _, c := range []struct {
		name      string
		firstSeen time.Time // FirstAllowedAt
		published time.Time
		now       time.Time
		grace     time.Duration
		want      Verdict
	}{
		{"allowed long before publication, inside grace", t0.Add(-300 * day), published, t0, 7 * day, Warn},
		{"allowed after publication (database lag), inside grace", published.Add(day), published, t0, 7 * day, Warn},
		{"grace over", t0.Add(-300 * day), published, published.Add(7 * day), 7 * day, Block},
		{"never allowed: a new digest gets no grace", time.Time{}, published, t0, 7 * day, Block},
		{"publication unknown: no end to the window, so no grace", t0.Add(-300 * day), time.Time{}, t0, 7 * day, Block},
		{"no grace configured", t0.Add(-300 * day), published, t0, 0, Block},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := rule
			v := *r.Vulnerabilities
			v.Grace = c.grace
			r.Vulnerabilities = &v
			y := x
			y.Published = c.published
			f := vulnFacts(y)
			f.FirstAllowedAt, f.Now = c.firstSeen, c.now
			d := Evaluate(r, f)
			if d.Verdict != c.want {
				t.Fatalf("verdict %s, want %s: %s", d.Verdict, c.want, d.Message(0))
			}
			if c.want == Warn {
				want := "1 CRITICAL vulnerability in grace until 2026-06-06T12:00Z (CVE-1 openssl 3.0.1 → 3.0.8)"
				if d.Message(0) != want {
					t.Errorf("message %q, want %q", d.Message(0), want)
				}
				if d.Reasons[0].Data["grace_ends"] != "2026-06-06T12:00:00Z" {
					t.Errorf("data %v", d.Reasons[0].Data)
				}
			}
		})
	}

	// Grace covers only the vulnerabilities it applies to.
	old := Vulnerability{ID: "CVE-0", Package: "bash", InstalledVersion: "5", FixedVersions: []string{"6"},
		Severity: SeverityHigh, Published: t0.Add(-30 * day)}
	f := vulnFacts(x, old)
	f.FirstAllowedAt = t0.Add(-300 * day)
	d := Evaluate(rule, f)
	if d.Verdict != Block || len(d.Reasons) != 2 || d.Reasons[0].Verdict != Block || d.Reasons[1].Verdict != Warn {
		t.Fatalf("mixed grace: %+v", d.Reasons)
	}
	if want := "1 HIGH vulnerability (CVE-0 bash 5 → 6); 1 CRITICAL vulnerability in grace until 2026-06-06T12:00Z (CVE-1 openssl 3.0.1 → 3.0.8)"; d.Message(0) != want {
		t.Errorf("message %q\nwant    %q", d.Message(0), want)
	}
}

func TestOnUnscanned(t *testing.T) {
	for _, state := range []string{ScanPending, ""} {
		for _, then := range []Verdict{Allow, Warn, Block} {
			f := vulnFacts()
			f.ScanState = state
			r := Rule{Vulnerabilities: &VulnRule{Block: SeverityHigh}, OnUnscanned: OnUnscanned{Wait: 30 * time.Second, Then: then}}
			d := Evaluate(r, f)
			if d.Verdict != then || !d.Has(CodeUnscanned) || d.Message(0) != "not scanned yet" {
				t.Errorf("state %q then %s: %+v", state, then, d)
			}
			if d.Reasons[0].Data["wait"] != "30s" {
				t.Errorf("data %v", d.Reasons[0].Data)
			}
		}
	}
	// A rule that checks no vulnerabilities and lets malware through does
	// not need the scan.
	f := vulnFacts()
	f.ScanState = ScanPending
	if d := Evaluate(Rule{Size: &SizeRule{MaxLayers: 10}, Malware: Allow, OnUnscanned: OnUnscanned{Then: Block}}, f); d.Verdict != Allow {
		t.Errorf("no vulnerability check, malware allowed, pending scan: %+v", d)
	}
	// Any other rule judges malware, which needs the scan: pending is
	// on_unscanned, failed is on_error (clamd down is never a pass).
	if d := Evaluate(Rule{Size: &SizeRule{MaxLayers: 10}, OnUnscanned: OnUnscanned{Then: Block}}, f); d.Verdict != Block || !d.Has(CodeUnscanned) {
		t.Errorf("no vulnerability check, pending scan: %+v", d)
	}
	f.ScanState, f.ScanError = ScanFailed, "clamd unreachable"
	if d := Evaluate(Rule{Size: &SizeRule{MaxLayers: 10}, OnError: Block}, f); d.Verdict != Block || !d.Has(CodeEvaluationError) {
		t.Errorf("no vulnerability check, failed scan: %+v", d)
	}
}

func TestOnError(t *testing.T) {
	vr := &VulnRule{Block: SeverityHigh, MaxDBAge: 3 * day}
	for _, c := range []struct {
		name  string
		facts func(*Facts)
		msg   string
	}{
		{"scan failed", func(f *Facts) { f.ScanState, f.ScanError = ScanFailed, "layer 3: unexpected EOF" },
			"vulnerability scan failed (layer 3: unexpected EOF)"},
		{"database missing", func(f *Facts) { f.DBBuiltAt = time.Time{} }, "vulnerability database missing"},
		{"database missing while pending", func(f *Facts) { f.DBBuiltAt, f.ScanState = time.Time{}, ScanPending },
			"vulnerability database missing"},
		{"database too old", func(f *Facts) { f.DBBuiltAt = t0.Add(-4*day - 90*time.Minute) },
			"vulnerability database is 4d1h old (max 3d)"},
		{"unknown scan state", func(f *Facts) { f.ScanState = "exploded" }, `unknown scan state "exploded"`},
		{"signature verification error", func(f *Facts) {
			f.Signature = SignatureFacts{State: SignatureError, Error: "fetch trusted root:\n  no such file"}
		}, "signature verification failed (fetch trusted root: no such file)"},
		{"unknown signature state", func(f *Facts) { f.Signature = SignatureFacts{State: "maybe"} }, `unknown signature state "maybe"`},
	} {
		for _, onErr := range []Verdict{Allow, Warn, Block} {
			t.Run(c.name+"/"+string(onErr), func(t *testing.T) {
				f := cleanFacts()
				c.facts(&f)
				sig := &SignatureRule{Required: true, Identities: []Identity{{Issuer: "https://issuer", Subject: "ci@acme"}}}
				r := Rule{Vulnerabilities: vr, Signature: sig, OnError: onErr}
				d := Evaluate(r, f)
				want := onErr
				if f.DBBuiltAt.IsZero() && onErr == Allow {
					want = Warn // a missing database is never passed silently
				}
				if d.Verdict != want || !d.Has(CodeEvaluationError) {
					t.Fatalf("verdict %s, want %s: %+v", d.Verdict, want, d.Reasons)
				}
				if d.Message(0) != c.msg {
					t.Errorf("message %q, want %q", d.Message(0), c.msg)
				}
			})
		}
	}
}

// The server's vulndb.max_age tags an image matched against an old database
// but keeps its findings: they are the best there is. A rule's own
// max_db_age is stricter and judges (on_error) instead.
func TestServerDBMaxAge(t *testing.T) {
	high := []Vulnerability{{ID: "CVE-9", Severity: SeverityHigh, Package: "openssl"}}
	for _, c := range []struct {
		name     string
		builtAgo time.Duration
		ruleMax  time.Duration
		vulns    []Vulnerability
		want     Verdict
		msg      string
	}{
		{"fresh", time.Hour, 0, nil, Allow, ""},
		{"stale, clean", 8 * day, 0, nil, Warn, "vulnerability database stale (built 2026-05-24T12:00Z, older than 1w)"},
		{"stale, findings still block", 8 * day, 0, high, Block, "1 HIGH vulnerability (CVE-9 openssl); vulnerability database stale (built 2026-05-24T12:00Z, older than 1w)"},
		{"rule limit judges first", 8 * day, 3 * day, high, Block, "vulnerability database is 8d old (max 3d)"},
		{"rule limit not reached, server's is", 8 * day, 10 * day, nil, Warn, "vulnerability database stale (built 2026-05-24T12:00Z, older than 1w)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := cleanFacts()
			f.DBBuiltAt, f.DBMaxAge, f.Vulnerabilities = t0.Add(-c.builtAgo), 7*day, c.vulns
			d := Evaluate(Rule{Vulnerabilities: &VulnRule{Block: SeverityHigh, MaxDBAge: c.ruleMax}, OnError: Block}, f)
			if d.Verdict != c.want || d.Message(0) != c.msg {
				t.Fatalf("got %s %q, want %s %q: %+v", d.Verdict, d.Message(0), c.want, c.msg, d.Reasons)
			}
		})
	}
}
