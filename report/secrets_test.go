package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

// A secret's SARIF result has the ruleId secret/<kind> and the file as its
// location; the table lists where it is.
func TestSecretFindingOutputs(t *testing.T) {
	res := sample()
	res.Findings = append(res.Findings, vulndb.Finding{Kind: vulndb.KindSecret, ID: "secret/private-key", Path: "/app/key.pem", Line: 3,
		Layer: "sha256:" + strings.Repeat("cd", 32), Severity: "CRITICAL", Fingerprint: "sha256:" + strings.Repeat("ef", 32), Query: -1})
	var b bytes.Buffer
	if err := SARIF(&b, res, "test"); err != nil {
		t.Fatal(err)
	}
	var log sarifLog
	if err := json.Unmarshal(b.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	run := log.Runs[0]
	last := run.Results[len(run.Results)-1]
	if last.RuleID != "secret/private-key" || last.Level != "error" || last.Locations[0].PhysicalLocation.ArtifactLocation.URI != "/app/key.pem" ||
		last.Message.Text != "secret/private-key found in /app/key.pem:3" {
		t.Fatalf("secret result: %+v", last)
	}
	rule := run.Tool.Driver.Rules[len(run.Tool.Driver.Rules)-1]
	if rule.ID != "secret/private-key" || strings.Contains(rule.HelpURI, "osv.dev") {
		t.Fatalf("secret rule: %+v", rule)
	}
	b.Reset()
	if err := Table(&b, res); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "/app/key.pem:3") || !strings.Contains(b.String(), "cdcdcdcdcdcd") {
		t.Fatalf("table:\n%s", b.String())
	}
}
