package policy

import (
	"slices"
	"testing"
)

func TestUnwaivable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reasons []Reason
		want    []string
	}{
		{"vulnerable", []Reason{{Code: CodeVulnerable, Verdict: Block}}, nil},
		{"unsigned", []Reason{{Code: CodeUnsigned, Verdict: Block}}, nil},
		{"malware", []Reason{{Code: CodeVulnerable, Verdict: Block}, {Code: CodeMalware, Verdict: Block}}, []string{CodeMalware}},
		{"malware warned", []Reason{{Code: CodeMalware, Verdict: Warn}}, nil},
		{"bad signature", []Reason{{Code: CodeSignatureInvalid, Verdict: Block}}, []string{CodeSignatureInvalid}},
		{"curation", []Reason{{Code: CodeSourceBlocked, Verdict: Block}, {Code: CodeTagBlocked, Verdict: Block}, {Code: CodeDigestRequired, Verdict: Block}}, []string{CodeSourceBlocked, CodeTagBlocked, CodeDigestRequired}},
		{"quarantine", []Reason{{Code: CodeQuarantined, Verdict: Block}}, []string{CodeQuarantined}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, r := range (Decision{Reasons: tc.reasons}).Unwaivable() {
				got = append(got, r.Code)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Unwaivable = %v, want %v", got, tc.want)
			}
		})
	}
}
