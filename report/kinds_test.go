package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
)

const layerB = "sha256:cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"

// mixed has one finding of each kind: a vulnerability, a malicious npm
// package, a known-bad file and a secret, hand-built as the scanner makes
// them.
func mixed() Result {
	r := sample()
	r.Inventory.Packages = append(r.Inventory.Packages, scanner.Package{Name: "02-echo", Version: "0.0.7", Ecosystem: "npm",
		Location: "/app/node_modules/02-echo/package.json", Layer: layerB, LayerIndex: 1})
	r.Findings = []vulndb.Finding{
		r.Findings[2],
		{Kind: vulndb.KindMalware, ID: "MAL-2025-191025", Summary: "Malicious code in 02-echo (npm)", Ecosystem: "npm", Package: "02-echo", InstalledVersion: "0.0.7", Severity: "CRITICAL", Query: 3},
		{Kind: vulndb.KindMalware, ID: "Eicar-Test-Signature", Path: "/tmp/eicar\x1b[2J.com", Layer: layerB, SHA256: strings.Repeat("ef", 32), Severity: "CRITICAL"},
		{Kind: vulndb.KindSecret, ID: "secret/private-key", Path: "/app/.env", Line: 3, Layer: layerB, Fingerprint: "sha256:" + strings.Repeat("12", 32), Severity: "HIGH"},
	}
	return r
}

func TestJSONKinds(t *testing.T) {
	var b bytes.Buffer
	if err := JSON(&b, mixed()); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Findings []map[string]any `json:"findings"`
	}
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Findings[0]["kind"]; ok {
		t.Errorf("a vulnerability has a kind: %v", got.Findings[0])
	}
	if got.Findings[1]["kind"] != "malware" || got.Findings[2]["kind"] != "malware" || got.Findings[3]["kind"] != "secret" {
		t.Errorf("kinds: %v", got.Findings)
	}
	if got.Findings[2]["path"] != "/tmp/eicar\x1b[2J.com" || got.Findings[2]["layer"] != layerB || got.Findings[3]["line"] != 3.0 {
		t.Errorf("file findings: %v", got.Findings[2:])
	}
}

func TestTableKinds(t *testing.T) {
	var b bytes.Buffer
	if err := Table(&b, mixed()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if want := "1 vulnerabilities (CRITICAL: 0, HIGH: 1, MEDIUM: 0, LOW: 0, UNKNOWN: 0), 2 malware findings, 1 secret"; !strings.Contains(out, want) {
		t.Errorf("table lacks %q:\n%s", want, out)
	}
	rows := map[string]bool{}
	for _, line := range strings.Split(out, "\n") {
		rows[strings.Join(strings.Fields(line), " ")] = true
	}
	for _, want := range []string{
		"PACKAGE/PATH INSTALLED FIXED ID KIND SEVERITY LAYER",
		// The package's layer comes from the inventory, a file's from
		// the finding.
		"02-echo 0.0.7 - MAL-2025-191025 malware CRITICAL 1 (cdcdcdcdcdcd)",
		"/tmp/eicar[2J.com - - Eicar-Test-Signature malware CRITICAL cdcdcdcdcdcd",
		"/app/.env:3 - - secret/private-key secret HIGH cdcdcdcdcdcd",
		"musl 1.2.3-r3 - CVE-2099-0001 vulnerability HIGH 0 ()",
	} {
		if !rows[want] {
			t.Errorf("table lacks the row %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"\x1b", strings.Repeat("12", 32)} {
		if strings.Contains(out, bad) {
			t.Errorf("table holds %q:\n%s", bad, out)
		}
	}
	// A scan with vulnerabilities only reads as it always did.
	b.Reset()
	if err := Table(&b, sample()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "KIND") || strings.Contains(b.String(), "malware") {
		t.Errorf("kind column without kinds:\n%s", b.String())
	}
}

func TestSARIFKinds(t *testing.T) {
	var b bytes.Buffer
	if err := SARIF(&b, mixed(), "test"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), strings.Repeat("12", 32)) {
		t.Error("SARIF holds the secret's fingerprint")
	}
	var log sarifLog
	if err := json.Unmarshal(b.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	run := log.Runs[0]
	rules := map[string]sarifRule{}
	for _, r := range run.Tool.Driver.Rules {
		rules[r.ID] = r
	}
	if len(rules) != 4 || len(run.Results) != 4 {
		t.Fatalf("rules %v, results %v", rules, run.Results)
	}
	for _, c := range []struct{ id, kind, help string }{
		{"MAL-2025-191025", "malware", "https://osv.dev/vulnerability/MAL-2025-191025"},
		{"Eicar-Test-Signature", "malware", ""},
		{"secret/private-key", "secret", "https://github.com/portcullis/portcullis#leaked-secrets"},
	} {
		r := rules[c.id]
		if r.Properties["kind"] != c.kind || r.HelpURI != c.help {
			t.Errorf("rule %s: %+v", c.id, r)
		}
	}
	if _, ok := rules["CVE-2099-0001"].Properties["kind"]; ok {
		t.Errorf("a vulnerability rule has a kind: %+v", rules["CVE-2099-0001"])
	}
	for _, c := range []struct {
		i        int
		id, uri  string
		line     int
		contains string
	}{
		{1, "MAL-2025-191025", "/app/node_modules/02-echo/package.json", 0, "npm package 02-echo 0.0.7 is malicious (MAL-2025-191025"},
		{2, "Eicar-Test-Signature", "/tmp/eicar\x1b[2J.com", 0, "/tmp/eicar[2J.com is known malware (Eicar-Test-Signature)"},
		{3, "secret/private-key", "/app/.env", 3, "secret/private-key found in /app/.env:3"},
	} {
		res := run.Results[c.i]
		loc := res.Locations[0].PhysicalLocation
		line := 0
		if loc.Region != nil {
			line = loc.Region.StartLine
		}
		if res.RuleID != c.id || loc.ArtifactLocation.URI != c.uri || line != c.line || !strings.Contains(res.Message.Text, c.contains) {
			t.Errorf("result %d: %+v, want %s at %s line %d saying %q", c.i, res, c.id, c.uri, c.line, c.contains)
		}
	}
}
