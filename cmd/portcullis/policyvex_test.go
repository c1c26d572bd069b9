package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/vex"
)

// 'policy test' shows what VEX suppressed and what it did not honour,
// with a bounded list.
func TestPrintDecisionVEX(t *testing.T) {
	d := policy.Decision{Effective: policy.Allow, Rule: "r", Mode: policy.ModeEnforce, Verdict: policy.Allow,
		VEX: []string{"VEX attestation ignored: not signed with the rule's signature trust"}}
	for i := range maxSuppressedShown + 3 {
		d.Suppressed = append(d.Suppressed, vex.Suppressed{Finding: vulndb.Finding{ID: fmt.Sprintf("CVE-2023-%04d", i), Package: "busybox", InstalledVersion: "1.35.0-r17"},
			Document: "doc-1", Status: "not_affected", Justification: "vulnerable_code_not_in_execute_path"})
	}
	var b strings.Builder
	if err := printDecision(&b, "img", d); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"suppressed by VEX: CVE-2023-0000 in busybox 1.35.0-r17 (doc-1, not_affected vulnerable_code_not_in_execute_path)",
		"… and 3 more suppressed by VEX",
		"VEX: VEX attestation ignored",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "suppressed by VEX:") != maxSuppressedShown {
		t.Errorf("%d suppressed lines:\n%s", strings.Count(out, "suppressed by VEX:"), out)
	}
}
