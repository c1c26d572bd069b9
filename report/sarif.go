package report

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/portcullis/portcullis/scanner/vulndb"
)

// SARIF 2.1.0, the subset code-scanning tools read:
// https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version,omitempty"`
	InformationURI string      `json:"informationUri"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID               string         `json:"id"`
	ShortDescription sarifText      `json:"shortDescription"`
	HelpURI          string         `json:"helpUri,omitempty"` // osv.dev for OSV ids only
	Properties       map[string]any `json:"properties,omitempty"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifResult struct {
	RuleID    string          `json:"ruleId"`
	Level     string          `json:"level"`
	Message   sarifText       `json:"message"`
	Locations []sarifLocation `json:"locations"`
}

type sarifLocation struct {
	PhysicalLocation struct {
		ArtifactLocation struct {
			URI string `json:"uri"`
		} `json:"artifactLocation"`
		Region *sarifRegion `json:"region,omitempty"` // a secret's line
	} `json:"physicalLocation"`
}

// SARIF writes findings as SARIF results; each ruleId is the OSV id.
func SARIF(w io.Writer, r Result, toolVersion string) error {
	run := sarifRun{Tool: sarifTool{Driver: sarifDriver{
		Name: "portcullis", Version: toolVersion, InformationURI: "https://github.com/portcullis/portcullis", Rules: []sarifRule{},
	}}, Results: []sarifResult{}}
	seen := map[string]bool{}
	for _, f := range r.Findings {
		if !seen[f.ID] {
			seen[f.ID] = true
			rule := sarifRule{ID: f.ID, ShortDescription: sarifText{Text: summaryOf(f)}, HelpURI: "https://osv.dev/vulnerability/" + f.ID,
				Properties: map[string]any{"tags": []string{"vulnerability", f.Severity}}}
			if f.Kind != vulndb.KindVulnerability {
				// A malicious package, a known-bad file or a secret
				// (ruleId secret/<kind>): its kind in the tags and as a
				// property; osv.dev knows only OSV ids.
				rule.Properties["tags"] = []string{kindName(f), "security", f.Severity}
				rule.Properties["kind"] = kindName(f)
				if !osvID(f) {
					rule.HelpURI = ""
				}
				if f.Kind == vulndb.KindSecret {
					rule.HelpURI = "https://github.com/portcullis/portcullis#leaked-secrets"
				}
			}
			if f.Score > 0 {
				// GitHub code scanning ranks by this property.
				rule.Properties["security-severity"] = fmt.Sprintf("%.1f", f.Score)
			}
			run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, rule)
		}
		res := sarifResult{RuleID: f.ID, Level: sarifLevel(f.Severity), Message: sarifText{Text: sarifMessage(f)}}
		var loc sarifLocation
		loc.PhysicalLocation.ArtifactLocation.URI = locationOf(r, f)
		if inFile(f) && f.Line > 0 {
			loc.PhysicalLocation.Region = &sarifRegion{StartLine: f.Line}
		}
		res.Locations = []sarifLocation{loc}
		run.Results = append(run.Results, res)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{Schema: "https://json.schemastore.org/sarif-2.1.0.json", Version: "2.1.0", Runs: []sarifRun{run}})
}

func summaryOf(f vulndb.Finding) string {
	if f.Summary != "" {
		return f.Summary
	}
	if inFile(f) {
		return f.ID + " (" + kindName(f) + ")"
	}
	return f.ID + " in " + f.Package
}

func message(f vulndb.Finding) string {
	msg := fmt.Sprintf("%s %s is affected by %s (%s)", f.Package, f.InstalledVersion, f.ID, f.Severity)
	if len(f.FixedVersions) > 0 {
		msg += "; fixed in " + f.FixedVersions[0]
	}
	return msg
}

func sarifLevel(severity string) string {
	switch severity {
	case vulndb.SeverityCritical, vulndb.SeverityHigh:
		return "error"
	case vulndb.SeverityMedium:
		return "warning"
	}
	return "note"
}

func locationOf(r Result, f vulndb.Finding) string {
	if inFile(f) {
		return f.Path // its Query means nothing
	}
	if r.Inventory != nil && f.Query >= 0 && f.Query < len(r.Inventory.Packages) {
		if loc := r.Inventory.Packages[f.Query].Location; loc != "" {
			return loc
		}
	}
	return r.Image
}
