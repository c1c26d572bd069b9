package vulndb

import (
	"encoding/json"
	"strings"

	gocvss30 "github.com/pandatix/go-cvss/30"
	gocvss31 "github.com/pandatix/go-cvss/31"
	gocvss40 "github.com/pandatix/go-cvss/40"
)

// Severity levels reported in Finding.Severity.
const (
	SeverityCritical = "CRITICAL"
	SeverityHigh     = "HIGH"
	SeverityMedium   = "MEDIUM"
	SeverityLow      = "LOW"
	SeverityUnknown  = "UNKNOWN"
)

// severity is what the index keeps of a record's severity for one package.
type severity struct {
	Level  string  `json:"l"`
	Score  float64 `json:"s,omitempty"`
	Vector string  `json:"v,omitempty"`
}

// SeverityRank orders levels for filters and for picking the worst of
// several: UNKNOWN 0, LOW 1, MEDIUM 2, HIGH 3, CRITICAL 4.
func SeverityRank(level string) int {
	switch level {
	case SeverityCritical:
		return 4
	case SeverityHigh:
		return 3
	case SeverityMedium:
		return 2
	case SeverityLow:
		return 1
	}
	return 0
}

// levelFromScore maps a CVSS base score to a level with the CVSS v3/v4
// qualitative scale. A score of 0.0 ("None") is reported as LOW: the record
// was rated and found harmless, which is not the same as UNKNOWN (not rated),
// and Finding.Severity has no NONE.
func levelFromScore(score float64) string {
	switch {
	case score >= 9.0:
		return SeverityCritical
	case score >= 7.0:
		return SeverityHigh
	case score >= 4.0:
		return SeverityMedium
	}
	return SeverityLow
}

// levelFromText maps the words databases use for severity: GHSA's
// database_specific.severity (CRITICAL, HIGH, MODERATE, LOW), Ubuntu's
// priorities (critical, high, medium, low, negligible), and similar. "" when
// the word means nothing we can rank ("untriaged", "unknown").
func levelFromText(s string) string {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "CRITICAL":
		return SeverityCritical
	case "HIGH", "IMPORTANT":
		return SeverityHigh
	case "MODERATE", "MEDIUM":
		return SeverityMedium
	case "LOW", "NEGLIGIBLE", "UNIMPORTANT", "MINOR":
		return SeverityLow
	}
	return ""
}

// cvssScore computes the base score of a CVSS v3.0, v3.1 or v4.0 vector.
// CVSS v2 is not scored: every record that has only v2 is old enough to
// carry a database severity as well, and v2 scores rank differently.
func cvssScore(vector string) (float64, bool) {
	vector = strings.TrimSpace(vector)
	switch {
	case strings.HasPrefix(vector, "CVSS:3.0/"):
		if c, err := gocvss30.ParseVector(vector); err == nil {
			return c.BaseScore(), true
		}
	case strings.HasPrefix(vector, "CVSS:3.1/"):
		if c, err := gocvss31.ParseVector(vector); err == nil {
			return c.BaseScore(), true
		}
	case strings.HasPrefix(vector, "CVSS:4.0/"):
		if c, err := gocvss40.ParseVector(vector); err == nil {
			return c.Score(), true
		}
	}
	return 0, false
}

// bestCVSS picks the highest-scoring CVSS vector of a severity list: when a
// record carries both v3.1 and v4.0 they rarely agree, and a gate should err
// on the side of the worse. Other entries (type "Ubuntu") give a text level.
func bestCVSS(list []osvSeverity) (sev severity, ok bool) {
	for _, s := range list {
		switch s.Type {
		case "CVSS_V3", "CVSS_V4":
			score, valid := cvssScore(s.Score)
			if valid && (!ok || score > sev.Score) {
				sev = severity{Level: levelFromScore(score), Score: score, Vector: s.Score}
				ok = true
			}
		}
	}
	return sev, ok
}

// textSeverity reads a "severity" word from a database_specific or
// ecosystem_specific object, if it has one.
func textSeverity(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var obj struct {
		Severity json.RawMessage `json:"severity"`
	}
	if json.Unmarshal(raw, &obj) != nil || len(obj.Severity) == 0 {
		return ""
	}
	var word string
	if json.Unmarshal(obj.Severity, &word) != nil {
		return ""
	}
	return levelFromText(word)
}

// deriveSeverity gives the severity of a record for one affected package,
// most specific and most precise first:
//  1. CVSS v3.x/v4 vectors in the affected entry's severity, then the
//     record's (highest computed base score);
//  2. a severity word in the affected entry's ecosystem_specific or
//     database_specific, then the record's database_specific (GHSA
//     "MODERATE" → MEDIUM);
//  3. the record's "Ubuntu" severity entries (Ubuntu priorities);
//  4. UNKNOWN.
func deriveSeverity(rec *osvRecord, aff *osvAffected) severity {
	if s, ok := bestCVSS(aff.Severity); ok {
		return s
	}
	if s, ok := bestCVSS(rec.Severity); ok {
		return s
	}
	for _, raw := range []json.RawMessage{aff.EcosystemSpecific, aff.DatabaseSpecific, rec.DatabaseSpecific} {
		if l := textSeverity(raw); l != "" {
			return severity{Level: l}
		}
	}
	for _, list := range [][]osvSeverity{aff.Severity, rec.Severity} {
		for _, s := range list {
			if s.Type == "Ubuntu" {
				if l := levelFromText(s.Score); l != "" {
					return severity{Level: l}
				}
			}
		}
	}
	return severity{Level: SeverityUnknown}
}
