package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/vulndb"
)

func sample() Result {
	inv := &scanner.Inventory{
		OS:     scanner.OS{ID: "alpine", VersionID: "3.16.9", PrettyName: "Alpine Linux v3.16", Ecosystem: "Alpine:v3.16"},
		Layers: []scanner.Layer{{Digest: "sha256:" + strings.Repeat("ab", 32)}},
		Packages: []scanner.Package{
			{Name: "busybox", Version: "1.35.0-r17", Ecosystem: "Alpine:v3.16", SourceName: "busybox", Location: "/lib/apk/db/installed", Layer: "sha256:" + strings.Repeat("ab", 32)},
			{Name: "ssl_client", Version: "1.35.0-r17", Ecosystem: "Alpine:v3.16", SourceName: "busybox", Location: "/lib/apk/db/installed", Layer: "sha256:" + strings.Repeat("ab", 32)},
			{Name: "musl", Version: "1.2.3-r3", Ecosystem: "Alpine:v3.16"},
		},
	}
	return Result{Image: "alpine:3.16.9", Inventory: inv, Findings: []vulndb.Finding{
		{ID: "ALPINE-CVE-2023-42366", Package: "busybox", InstalledVersion: "1.35.0-r17", FixedVersions: []string{"1.35.0-r18"}, Severity: "UNKNOWN", Query: 0},
		{ID: "ALPINE-CVE-2023-42366", Package: "ssl_client", InstalledVersion: "1.35.0-r17", FixedVersions: []string{"1.35.0-r18"}, Severity: "UNKNOWN", Query: 1},
		{ID: "CVE-2099-0001", Package: "musl", InstalledVersion: "1.2.3-r3", Severity: "HIGH", Score: 7.5, Query: 2},
	}}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	if err := Table(&b, sample()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"alpine:3.16.9 (Alpine Linux v3.16)", "3 packages in 1 layers, 3 vulnerabilities", "HIGH: 1", "UNKNOWN: 2",
		"PACKAGE", "busybox", "1.35.0-r18", "ALPINE-CVE-2023-42366", "0 (abababababab)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "musl") > strings.Index(out, "busybox") {
		t.Errorf("HIGH finding not listed first:\n%s", out)
	}
}

func TestSARIF(t *testing.T) {
	var b bytes.Buffer
	if err := SARIF(&b, sample(), "test"); err != nil {
		t.Fatal(err)
	}
	var log sarifLog
	if err := json.Unmarshal(b.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	run := log.Runs[0]
	if log.Version != "2.1.0" || len(run.Results) != 3 || len(run.Tool.Driver.Rules) != 2 {
		t.Fatalf("sarif: %+v", log)
	}
	if run.Results[0].RuleID != "ALPINE-CVE-2023-42366" || run.Results[2].Level != "error" || run.Results[0].Level != "note" {
		t.Fatalf("results: %+v", run.Results)
	}
	if uri := run.Results[0].Locations[0].PhysicalLocation.ArtifactLocation.URI; uri != "/lib/apk/db/installed" {
		t.Fatalf("location %q", uri)
	}
}

func TestSeverityFilter(t *testing.T) {
	levels, err := ParseSeverities("high, critical")
	if err != nil {
		t.Fatal(err)
	}
	if got := Filter(sample().Findings, levels); len(got) != 1 || got[0].Package != "musl" {
		t.Fatalf("filtered %+v", got)
	}
	if _, err := ParseSeverities("HIGH,severe"); err == nil {
		t.Fatal("unknown severity accepted")
	}
	if got := Filter(sample().Findings, nil); len(got) != 3 {
		t.Fatal("no filter dropped findings")
	}
}
