package policy

import (
	"strings"
	"testing"
)

func secretFacts() Facts {
	f := cleanFacts()
	f.Vulnerabilities = []Vulnerability{
		{Kind: KindSecret, ID: "secret/private-key", Path: "/app/key.pem", Severity: SeverityCritical},
		{Kind: KindSecret, ID: "secret/aws-access-key", Path: "config:Env", Severity: SeverityHigh},
	}
	return f
}

func TestSecretsCheck(t *testing.T) {
	tests := []struct {
		name, rule   string
		facts        func() Facts
		verdict      Verdict
		wantMessage  string
		wantNoReason bool
	}{
		{"block any", "secrets: {block: any}", secretFacts, Block,
			"2 leaked secrets (secret/private-key in /app/key.pem, secret/aws-access-key in config:Env)", false},
		{"block one kind, warn any", "secrets: {block: [private-key], warn: any}", secretFacts, Block,
			"1 leaked secret (secret/private-key in /app/key.pem); 1 leaked secret (secret/aws-access-key in config:Env)", false},
		{"warn listed kinds", "secrets: {warn: [aws-access-key]}", secretFacts, Warn,
			"1 leaked secret (secret/aws-access-key in config:Env)", false},
		{"other kinds only", "secrets: {block: [github-token]}", secretFacts, Allow, "", true},
		{"no secrets", "secrets: {block: any}", cleanFacts, Allow, "", true},
		// Secrets are not vulnerabilities: a severity threshold does not
		// count them (the secrets check does, by kind).
		{"vulnerability thresholds ignore secrets", "vulnerabilities: {block: LOW}", secretFacts, Allow, "", true},
		{"pending scan", "secrets: {block: any}", func() Facts { f := secretFacts(); f.ScanState = ScanPending; return f }, Block, "not scanned yet", false},
		{"failed scan", "secrets: {block: any}\n    on_error: warn", func() Facts { f := secretFacts(); f.ScanState = ScanFailed; return f }, Warn, "scan failed", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, "rules:\n  - name: r\n    "+tt.rule+"\n")
			d := p.Evaluate(tt.facts())
			if d.Verdict != tt.verdict || (tt.wantNoReason && len(d.Reasons) != 0) {
				t.Fatalf("verdict %s, reasons %+v; want %s", d.Verdict, d.Reasons, tt.verdict)
			}
			if !tt.wantNoReason && d.Message(0) != tt.wantMessage {
				t.Fatalf("message %q, want %q", d.Message(0), tt.wantMessage)
			}
			for _, r := range d.Reasons {
				if r.Code != CodeSecret && strings.Contains(r.Message, "secret/") {
					t.Errorf("reason %s names a secret", r.Code)
				}
			}
		})
	}
}

func TestDefaultPolicyWarnsOnSecrets(t *testing.T) {
	d := Default().Evaluate(secretFacts())
	if d.Verdict != Warn || d.Effective != Warn || !strings.Contains(d.Message(0), "secret/private-key in /app/key.pem") {
		t.Fatalf("default policy: %s/%s %q", d.Verdict, d.Effective, d.Message(0))
	}
}

func TestSecretsParseErrors(t *testing.T) {
	for _, src := range []string{
		"secrets: {block: all}",
		"secrets: {block: [private-keys]}",
		"secrets: {}",
		"secrets: {warn: 3}",
		"secrets: any",
	} {
		if _, err := Parse([]byte("rules:\n  - " + src + "\n")); err == nil {
			t.Errorf("Parse accepted %q", src)
		}
	}
}
