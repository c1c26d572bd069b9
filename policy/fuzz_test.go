package policy

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// go test ./policy -run '^$' -fuzz FuzzParse -fuzztime 60s
func FuzzParse(f *testing.F) {
	f.Add([]byte(exampleYAML(f)))
	f.Add([]byte(defaultPolicy))
	for _, s := range []string{
		"rules: []\n",
		"rules:\n  - vulnerabilities: {block: HIGH, allow: [{id: CVE-1, expires: 2027-01-31}], grace: 7d}\n",
		"rules:\n  - match: {upstreams: ['*.io'], repositories: ['a/**']}\n    size: {max_compressed: 1.5GiB}\n",
		"rules:\n  - malware: warn\n    mode: audit\n",
		"rules:\n  - {malware: allow, vulnerabilities: {block: HIGH}}\n",
		"rules:\n  - malware: [block]\n",
		"rules:\n  - signature: &s {required: true, keys: [k]}\n  - {match: {upstreams: [x]}, signature: *s}\n",
		"a: &a [*a]\n",
		"rules: [\n",
		"rules:\n\t- x\n",
		"---\n---\n",
		"rules:\n  - secrets: {block: [private-key], warn: any}\n",
		"rules:\n  - {match: {}, source: block, reason: only ours}\n  - {match: {upstreams: [ghcr.io]}, tags: {block: [latest, '*-rc*'], require_digest: true}}\n",
		"rules:\n  - {source: allow, reason: x, tags: {block: ['**', '?']}}\n",
	} {
		f.Add([]byte(s))
	}
	facts := cleanFacts()
	facts.Vulnerabilities = []Vulnerability{{ID: "CVE-1", Severity: SeverityCritical, FixedVersions: []string{"2"}},
		{Kind: KindMalware, ID: "MAL-2025-1", Ecosystem: "npm", Package: "foo", InstalledVersion: "1.0.0", Severity: SeverityCritical},
		{Kind: KindSecret, ID: "secret/private-key", Path: "/k.pem", Severity: SeverityCritical}}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error of type %T: %v", err, err)
			}
			for _, e := range es {
				if e.Msg == "" || e.Line < 0 {
					t.Fatalf("bad error %+v", e)
				}
			}
			return
		}
		if p.Version() != contentHash(p.Rules) {
			t.Fatal("version is not the content hash")
		}
		again, err := Parse(data)
		if err != nil || again.Version() != p.Version() {
			t.Fatalf("second parse differs: %v", err)
		}
		for _, r := range p.Rules {
			if r.Name == "" || !slices.Contains([]Mode{ModeEnforce, ModeWarn, ModeAudit}, r.Mode) ||
				!slices.Contains([]Verdict{Allow, Warn, Block}, r.OnError) ||
				!slices.Contains([]Verdict{Allow, Warn, Block}, r.Malware) {
				t.Fatalf("rule without defaults: %+v", r)
			}
			// Every parsed rule must evaluate without surprises.
			d := Evaluate(r, facts)
			if d.Effective.rank() > d.Verdict.rank() {
				t.Fatalf("mode made %s worse: %s", d.Verdict, d.Effective)
			}
			// The malware in the facts gets the rule's malware verdict,
			// whatever the mode.
			if d.Effective.rank() < r.Malware.rank() {
				t.Fatalf("malware: %s served as %s", r.Malware, d.Effective)
			}
			_ = d.Message(200)
			// Curation: a digest never meets the tag rules, and what a
			// client is shown stays one line of text.
			for _, ref := range []string{"latest", "1.0-rc1", "sha256:0123", ""} {
				reason, refused := Curate(r, ref)
				if refused && (ref == "" || strings.Contains(ref, ":")) && reason.Code != CodeSourceBlocked {
					t.Fatalf("reference %q refused by %s", ref, reason.Code)
				}
				if refused && (!utf8.ValidString(reason.Message) || strings.ContainsAny(reason.Message, "\r\n")) {
					t.Fatalf("curation message %q", reason.Message)
				}
			}
		}
		_ = p.Select("ghcr.io", "acme/api")
	})
}

// go test ./policy -run '^$' -fuzz FuzzNewerReleases -fuzztime 60s
func FuzzNewerReleases(f *testing.F) {
	f.Add("1.2.3,1.2.10,1.3.0,latest,v2.0.0-rc.1", "1.2.3")
	f.Add("v1.0.0-rc1,v1.0.0-rc10,v1.0.0", "v1.0.0-rc2")
	f.Add("1.25.3-alpine,1.25.4-alpine,1.26.0,3.20", "1.25.3-alpine")
	f.Add("20240101,20231201,1.2.3.4", "20231115")
	f.Add("01.002.0003,1.2.4", "1.2.3")
	f.Fuzz(func(t *testing.T, tagList, current string) {
		tags := strings.Split(tagList, ",")
		patch, overall := NewerReleases(tags, current)
		cur, curOK := parseTagVersion(current)
		for _, got := range []string{patch, overall} {
			if got == "" {
				continue
			}
			if !curOK || !slices.Contains(tags, got) {
				t.Fatalf("suggested %q: not one of the tags, or current %q is no version", got, current)
			}
			v, ok := parseTagVersion(got)
			if !ok || compareVersions(v, cur) <= 0 || v.variant != cur.variant {
				t.Fatalf("suggested %q is not newer than %q", got, current)
			}
		}
		if patch != "" && overall == "" {
			t.Fatalf("patch %q without an overall newest", patch)
		}
		if patch != "" {
			p, _ := parseTagVersion(patch)
			o, _ := parseTagVersion(overall)
			if compareVersions(o, p) < 0 {
				t.Fatalf("overall %q below patch %q", overall, patch)
			}
		}
		rev := slices.Clone(tags)
		slices.Reverse(rev)
		if p2, o2 := NewerReleases(rev, current); p2 != patch || o2 != overall {
			t.Fatalf("order of tags matters: (%q, %q) vs (%q, %q)", patch, overall, p2, o2)
		}
	})
}

// go test ./policy -run '^$' -fuzz FuzzMessage -fuzztime 60s
func FuzzMessage(f *testing.F) {
	f.Add("2 fixable HIGH vulnerabilities (CVE-1 a 1 → 2, CVE-2 b 1 → 2)", "not signed", "newer release 1.4.7 available", 60)
	f.Add("x (", ")", "é→…", 3)
	f.Fuzz(func(t *testing.T, a, b, c string, max int) {
		if !utf8.ValidString(a) || !utf8.ValidString(b) || !utf8.ValidString(c) {
			return
		}
		d := Decision{Reasons: []Reason{{Message: a}, {Message: b}, {Message: c}}}
		got := d.Message(max)
		if max > 0 && len(got) > max {
			t.Fatalf("Message(%d) = %q is %d bytes", max, got, len(got))
		}
		if !utf8.ValidString(got) {
			t.Fatalf("Message(%d) = %q is not UTF-8", max, got)
		}
	})
}
