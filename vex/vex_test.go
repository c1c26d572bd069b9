package vex

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

const digest1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

func TestParseExamples(t *testing.T) {
	for _, tc := range []struct {
		file       string
		id         string
		statements int
		check      func(t *testing.T, d *Document)
	}{
		{file: "v020.json", id: "https://example.com/vex/app-2026-001", statements: 2, check: func(t *testing.T, d *Document) {
			s := d.Statements[0]
			if s.Vulnerability != "CVE-2023-0001" || strings.Join(s.Aliases, ",") != "https://nvd.nist.gov/vuln/detail/CVE-2023-0001,GHSA-aaaa-bbbb-cccc" {
				t.Errorf("vulnerability %q aliases %q", s.Vulnerability, s.Aliases)
			}
			if s.Status != StatusNotAffected || s.Justification != "vulnerable_code_not_in_execute_path" {
				t.Errorf("status %q justification %q", s.Status, s.Justification)
			}
			if len(s.Products) != 1 || len(s.Products[0].Subcomponents) != 1 || s.Products[0].Subcomponents[0] != "pkg:npm/lodash@4.17.20" {
				t.Errorf("products %+v", s.Products)
			}
			// The statement without a timestamp takes the document's.
			if want := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC); !s.Timestamp.Equal(want) {
				t.Errorf("timestamp %v, want the document's %v", s.Timestamp, want)
			}
			if want := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC); !d.Statements[1].Timestamp.Equal(want) {
				t.Errorf("timestamp %v, want the statement's %v", d.Statements[1].Timestamp, want)
			}
		}},
		{file: "legacy.json", id: "https://example.com/vex/legacy-1", statements: 1, check: func(t *testing.T, d *Document) {
			s := d.Statements[0]
			if s.Vulnerability != "CVE-2023-0003" || s.ImpactStatement != "the parser is never called" || s.Products[0].ID == "" {
				t.Errorf("statement %+v", s)
			}
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile("testdata/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			d, err := Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			if d.ID != tc.id || len(d.Statements) != tc.statements {
				t.Fatalf("id %q, %d statements", d.ID, len(d.Statements))
			}
			tc.check(t, d)
		})
	}
}

func doc(statements string) string {
	return `{"@context":"https://openvex.dev/ns/v0.2.0","@id":"x","statements":[` + statements + `]}`
}

func TestParseRejects(t *testing.T) {
	okStatement := `{"vulnerability":{"name":"CVE-1"},"products":[{"@id":"` + digest1 + `"}],"status":"fixed"}`
	many := strings.TrimSuffix(strings.Repeat(okStatement+",", MaxStatements+1), ",")
	long := strings.Repeat("a", MaxStringLength+1)
	var products []string
	for range MaxProducts + 1 {
		products = append(products, `"`+digest1+`"`)
	}
	var subs []string
	for range MaxSubcomponents + 1 {
		subs = append(subs, `"pkg:npm/a@1"`)
	}
	for _, tc := range []struct{ name, input, want string }{
		{"not JSON", `{`, "parse OpenVEX JSON"},
		{"trailing data", doc(okStatement) + `{}`, "trailing data"},
		{"not OpenVEX", `{"@context":"https://cyclonedx.org","statements":[]}`, "is not OpenVEX"},
		{"no context", `{"statements":[]}`, "is not OpenVEX"},
		{"unknown status", doc(`{"vulnerability":{"name":"CVE-1"},"products":["` + digest1 + `"],"status":"maybe"}`), "unknown status"},
		{"no vulnerability", doc(`{"vulnerability":{},"products":["` + digest1 + `"],"status":"fixed"}`), "no name or @id"},
		{"vulnerability a number", doc(`{"vulnerability":7,"products":["` + digest1 + `"],"status":"fixed"}`), "want a name or an object"},
		{"no products", doc(`{"vulnerability":"CVE-1","status":"fixed"}`), "no products"},
		{"empty product", doc(`{"vulnerability":"CVE-1","products":[{}],"status":"fixed"}`), "no @id or identifiers"},
		{"bad statement timestamp", doc(`{"vulnerability":"CVE-1","products":["` + digest1 + `"],"status":"fixed","timestamp":"yesterday"}`), "want RFC 3339"},
		{"bad document timestamp", `{"@context":"https://openvex.dev/ns","timestamp":"1/2/2023","statements":[]}`, "document timestamp"},
		{"too many statements", doc(many), "statements, limit"},
		{"too many products", doc(`{"vulnerability":"CVE-1","products":[` + strings.Join(products, ",") + `],"status":"fixed"}`), "products, limit"},
		{"too many subcomponents", doc(`{"vulnerability":"CVE-1","products":[{"@id":"` + digest1 + `","subcomponents":[` + strings.Join(subs, ",") + `]}],"status":"fixed"}`), "subcomponents, limit"},
		{"long justification", doc(`{"vulnerability":"CVE-1","products":["` + digest1 + `"],"status":"not_affected","justification":"` + long + `"}`), "justification"},
		{"long product", doc(`{"vulnerability":"CVE-1","products":["` + long + `"],"status":"fixed"}`), "product"},
		{"long vulnerability", doc(`{"vulnerability":"` + long + `","products":["` + digest1 + `"],"status":"fixed"}`), "vulnerability"},
		{"too large", `{"@context":"https://openvex.dev/ns","x":"` + strings.Repeat("a", MaxDocumentBytes) + `"}`, "too large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Parse([]byte(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, %v; want an error containing %q", d, err, tc.want)
			}
			if len(err.Error()) > 400 {
				t.Errorf("error of %d characters quotes too much input", len(err.Error()))
			}
		})
	}
}

func TestParseNestedSubcomponentsNotRecursed(t *testing.T) {
	d, err := Parse([]byte(doc(`{"vulnerability":"CVE-1","status":"fixed","products":[{"@id":"` + digest1 +
		`","subcomponents":[{"@id":"pkg:npm/a@1","subcomponents":[{"@id":"pkg:npm/deeper@1"}]}]}]}`)))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(d.Statements[0].Products[0].Subcomponents); got != "[pkg:npm/a@1]" {
		t.Errorf("subcomponents %s", got)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"v020.json", "legacy.json"} {
		data, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(doc(`{"vulnerability":"CVE-1","products":[{"identifiers":{"purl":"pkg:oci/a@sha256%3Aab"},"subcomponents":["pkg:npm/a"]}],"status":"not_affected"}`)))
	f.Add([]byte(`{"@context":"https://openvex.dev/ns","statements":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			if d != nil {
				t.Fatal("a document with an error")
			}
			return
		}
		if len(d.Statements) > MaxStatements {
			t.Fatalf("%d statements", len(d.Statements))
		}
		for _, s := range d.Statements {
			if s.Vulnerability == "" || len(s.Products) == 0 || len(s.Products) > MaxProducts {
				t.Fatalf("statement %+v", s)
			}
			for _, p := range s.Products {
				if len(p.Subcomponents) > MaxSubcomponents*(1+MaxIdentifiers) {
					t.Fatalf("%d subcomponents", len(p.Subcomponents))
				}
			}
		}
		// Whatever parsed applies without a panic.
		Apply([]Source{{Doc: d}}, []string{digest1}, sampleFindings())
	})
}
