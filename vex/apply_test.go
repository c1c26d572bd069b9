package vex

import (
	"slices"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

const digest2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222"

func sampleFindings() []vulndb.Finding {
	return []vulndb.Finding{
		{ID: "GHSA-aaaa-bbbb-cccc", Aliases: []string{"CVE-2023-0001"}, Ecosystem: "npm", Package: "lodash", InstalledVersion: "4.17.20"},
		{ID: "CVE-2023-0002", Ecosystem: "PyPI", Package: "Jinja2", InstalledVersion: "2.10"},
		{ID: "DEBIAN-CVE-2023-0003", Upstream: []string{"CVE-2023-0003"}, Ecosystem: "Debian:12", Package: "openssl", InstalledVersion: "3.0.11-1~deb12u2"},
		{ID: "CVE-2023-0004", Ecosystem: "Go", Package: "golang.org/x/net", InstalledVersion: "v0.1.0"},
		{Kind: vulndb.KindMalware, ID: "MAL-2023-0005", Aliases: []string{"CVE-2023-0005"}, Ecosystem: "npm", Package: "evil", InstalledVersion: "1.0.0"},
		{Kind: vulndb.KindSecret, ID: "secret/private-key", Path: "/key.pem"},
	}
}

func parse(t *testing.T, statements ...string) *Document {
	t.Helper()
	d, err := Parse([]byte(doc(strings.Join(statements, ","))))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// st builds a statement: vulnerability, products JSON, status, extra fields.
func st(vuln, products, status, extra string) string {
	s := `{"vulnerability":` + vuln + `,"products":` + products + `,"status":"` + status + `"`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

const (
	just    = `"justification":"component_not_present"`
	imgBare = `["` + digest1 + `"]`
	imgPURL = `[{"@id":"pkg:oci/app@sha256%3A1111111111111111111111111111111111111111111111111111111111111111?repository_url=r.example/app&tag=1"}]`
	imgID   = `[{"@id":"https://example.com/app","identifiers":{"purl":"pkg:oci/app@sha256%3A1111111111111111111111111111111111111111111111111111111111111111"}}]`
)

func TestApply(t *testing.T) {
	for _, tc := range []struct {
		name       string
		docs       [][]string // statements per document
		suppressed []string   // finding ids
		note       string
	}{
		{name: "not_affected with justification, bare digest", docs: [][]string{{st(`"CVE-2023-0002"`, imgBare, "not_affected", just)}}, suppressed: []string{"CVE-2023-0002"}},
		{name: "not_affected with impact statement, oci purl", docs: [][]string{{st(`"CVE-2023-0002"`, imgPURL, "not_affected", `"impact_statement":"never loaded"`)}}, suppressed: []string{"CVE-2023-0002"}},
		{name: "purl in identifiers", docs: [][]string{{st(`"CVE-2023-0002"`, imgID, "fixed", "")}}, suppressed: []string{"CVE-2023-0002"}},
		{name: "not_affected without justification does not count", docs: [][]string{{st(`"CVE-2023-0002"`, imgBare, "not_affected", "")}}, note: "no justification or impact statement"},
		{name: "fixed", docs: [][]string{{st(`"CVE-2023-0002"`, imgBare, "fixed", "")}}, suppressed: []string{"CVE-2023-0002"}},
		{name: "affected changes nothing", docs: [][]string{{st(`"CVE-2023-0002"`, imgBare, "affected", "")}}},
		{name: "under_investigation changes nothing", docs: [][]string{{st(`"CVE-2023-0002"`, imgBare, "under_investigation", "")}}},
		{name: "finding alias named", docs: [][]string{{st(`"CVE-2023-0001"`, imgBare, "fixed", "")}}, suppressed: []string{"GHSA-aaaa-bbbb-cccc"}},
		{name: "statement alias names finding id", docs: [][]string{{st(`{"name":"CVE-9","aliases":["GHSA-AAAA-BBBB-CCCC"]}`, imgBare, "fixed", "")}}, suppressed: []string{"GHSA-aaaa-bbbb-cccc"}},
		{name: "upstream CVE of a distro id", docs: [][]string{{st(`"CVE-2023-0003"`, imgBare, "fixed", "")}}, suppressed: []string{"DEBIAN-CVE-2023-0003"}},
		{name: "another vulnerability", docs: [][]string{{st(`"CVE-2023-9999"`, imgBare, "fixed", "")}}},
		{name: "another digest", docs: [][]string{{st(`"CVE-2023-0002"`, `["`+digest2+`"]`, "fixed", "")}}},
		{name: "another image purl", docs: [][]string{{st(`"CVE-2023-0002"`, `["pkg:oci/app@sha256%3A2222222222222222222222222222222222222222222222222222222222222222"]`, "fixed", "")}}},
		{name: "subcomponent names the package", docs: [][]string{{st(`"CVE-2023-0001"`, `[{"@id":"`+digest1+`","subcomponents":[{"@id":"pkg:npm/lodash@4.17.20"}]}]`, "not_affected", just)}}, suppressed: []string{"GHSA-aaaa-bbbb-cccc"}},
		{name: "subcomponent without version", docs: [][]string{{st(`"CVE-2023-0002"`, `[{"@id":"`+digest1+`","subcomponents":["pkg:pypi/jinja2"]}]`, "fixed", "")}}, suppressed: []string{"CVE-2023-0002"}},
		{name: "subcomponent with qualifiers in any order", docs: [][]string{{st(`"CVE-2023-0003"`, `[{"@id":"`+digest1+`","subcomponents":["pkg:deb/debian/openssl@3.0.11-1~deb12u2?distro=debian-12&arch=amd64"]}]`, "fixed", "")}}, suppressed: []string{"DEBIAN-CVE-2023-0003"}},
		{name: "go subcomponent", docs: [][]string{{st(`"CVE-2023-0004"`, `[{"@id":"`+digest1+`","subcomponents":["pkg:golang/golang.org/x/net@v0.1.0"]}]`, "fixed", "")}}, suppressed: []string{"CVE-2023-0004"}},
		{name: "subcomponent names another package", docs: [][]string{{st(`"CVE-2023-0001"`, `[{"@id":"`+digest1+`","subcomponents":["pkg:npm/underscore@4.17.20"]}]`, "fixed", "")}}},
		{name: "subcomponent names another version", docs: [][]string{{st(`"CVE-2023-0001"`, `[{"@id":"`+digest1+`","subcomponents":["pkg:npm/lodash@4.17.21"]}]`, "fixed", "")}}},
		{name: "latest affected wins over not_affected", docs: [][]string{{
			st(`"CVE-2023-0002"`, imgBare, "not_affected", just+`,"timestamp":"2026-01-01T00:00:00Z"`),
			st(`"CVE-2023-0002"`, imgBare, "affected", `"timestamp":"2026-02-01T00:00:00Z"`)}}},
		{name: "latest not_affected wins over affected", docs: [][]string{{
			st(`"CVE-2023-0002"`, imgBare, "not_affected", just+`,"timestamp":"2026-03-01T00:00:00Z"`),
			st(`"CVE-2023-0002"`, imgBare, "affected", `"timestamp":"2026-02-01T00:00:00Z"`)}}, suppressed: []string{"CVE-2023-0002"}},
		{name: "latest across documents", docs: [][]string{
			{st(`"CVE-2023-0002"`, imgBare, "under_investigation", `"timestamp":"2026-05-01T00:00:00Z"`)},
			{st(`"CVE-2023-0002"`, imgBare, "fixed", `"timestamp":"2026-04-01T00:00:00Z"`)}}},
		{name: "malware is not suppressed", docs: [][]string{{st(`"MAL-2023-0005"`, imgBare, "not_affected", just), st(`"CVE-2023-0005"`, imgBare, "fixed", "")}}},
		{name: "secrets are not suppressed", docs: [][]string{{st(`"secret/private-key"`, imgBare, "fixed", "")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sources []Source
			for _, statements := range tc.docs {
				sources = append(sources, Source{Doc: parse(t, statements...), Origin: "test"})
			}
			all := sampleFindings()
			r := Apply(sources, []string{digest1}, all)
			var got []string
			for _, s := range r.Suppressed {
				got = append(got, s.ID)
				if s.Document != "x" || s.Status == "" {
					t.Errorf("suppressed %s: document %q status %q", s.ID, s.Document, s.Status)
				}
			}
			if !slices.Equal(got, tc.suppressed) {
				t.Errorf("suppressed %v, want %v", got, tc.suppressed)
			}
			if len(r.Findings)+len(r.Suppressed) != len(all) {
				t.Errorf("%d kept + %d suppressed of %d findings", len(r.Findings), len(r.Suppressed), len(all))
			}
			for _, f := range r.Findings {
				if slices.Contains(got, f.ID) {
					t.Errorf("%s both kept and suppressed", f.ID)
				}
			}
			if notes := strings.Join(r.Notes, "\n"); (tc.note == "") != (notes == "") || !strings.Contains(notes, tc.note) {
				t.Errorf("notes %q, want %q", notes, tc.note)
			}
		})
	}
}

func TestApplyKeepsJustification(t *testing.T) {
	r := Apply([]Source{{Doc: parse(t, st(`"CVE-2023-0002"`, imgBare, "not_affected", just+`,"impact_statement":"not reachable"`)), Origin: "policy:a.json"}}, []string{digest1}, sampleFindings())
	if len(r.Suppressed) != 1 {
		t.Fatalf("suppressed %+v", r.Suppressed)
	}
	s := r.Suppressed[0]
	if s.Status != StatusNotAffected || s.Justification != "component_not_present" || s.ImpactStatement != "not reachable" || s.Origin != "policy:a.json" || s.Package != "Jinja2" {
		t.Errorf("suppressed %+v", s)
	}
}

// The image is also named by the index it was pulled through.
func TestApplyIndexDigest(t *testing.T) {
	d := parse(t, st(`"CVE-2023-0002"`, `["pkg:oci/app@sha256%3A2222222222222222222222222222222222222222222222222222222222222222"]`, "fixed", ""))
	for _, tc := range []struct {
		name       string
		digests    []string
		suppressed int
	}{
		{"manifest and its index", []string{digest1, digest2}, 1},
		{"manifest alone", []string{digest1}, 0},
		{"no digest", []string{""}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := Apply([]Source{{Doc: d}}, tc.digests, sampleFindings()); len(r.Suppressed) != tc.suppressed {
				t.Fatalf("%d suppressed, want %d", len(r.Suppressed), tc.suppressed)
			}
		})
	}
}
