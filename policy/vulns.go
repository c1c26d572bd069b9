package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// maxListed bounds how many vulnerabilities a reason's message names; Data
// carries all of them.
const maxListed = 5

// vulnHit is a finding the rule counts, with how it was judged.
type vulnHit struct {
	Vulnerability
	verdict   Verdict
	expired   time.Time // an allowlist entry for it expired at this time
	graceEnds time.Time // set when grace turned block into warn
}

func checkVulnerabilities(r Rule, f Facts) []Reason {
	v := r.Vulnerabilities
	if v == nil {
		return nil // checkScan speaks for the scan, if another check needs it
	}
	switch {
	case f.ScanState == ScanFailed:
		return []Reason{errorReason(r, "scan", "vulnerability scan failed", f.ScanError)}
	case f.DBBuiltAt.IsZero():
		// Checked before pending: without a database the scan would never
		// produce findings, so waiting cannot help. Never silent: even
		// on_error: allow tags the image, since every image would otherwise
		// pass unexamined with nothing telling anyone.
		e := errorReason(r, "database", "vulnerability database missing", "")
		e.Verdict = worse(e.Verdict, Warn)
		return []Reason{e}
	case v.MaxDBAge > 0 && f.Now.Sub(f.DBBuiltAt) > v.MaxDBAge:
		age := f.Now.Sub(f.DBBuiltAt).Truncate(time.Hour)
		return []Reason{errorReason(r, "database",
			fmt.Sprintf("vulnerability database is %s old (max %s)", formatDuration(age), formatDuration(v.MaxDBAge)), "")}
	case f.ScanState != ScanDone:
		return unfinishedScan(r, f, "vulnerability scan failed")
	}

	var hits []vulnHit
	for _, x := range f.Vulnerabilities {
		if x.Kind != "" {
			continue // malware and secrets are judged by checks of their own
		}
		h, ok := v.judge(x, f)
		if ok {
			hits = append(hits, h)
		}
	}
	var blocked, graced, warned []vulnHit
	for _, h := range hits {
		switch {
		case h.verdict == Block:
			blocked = append(blocked, h)
		case !h.graceEnds.IsZero():
			graced = append(graced, h)
		default:
			warned = append(warned, h)
		}
	}
	var rs []Reason
	if len(blocked) > 0 {
		rs = append(rs, v.reason(Block, v.Block, blocked, ""))
	}
	if len(graced) > 0 {
		ends := graced[0].graceEnds
		for _, h := range graced {
			if h.graceEnds.Before(ends) {
				ends = h.graceEnds
			}
		}
		r := v.reason(Warn, v.Block, graced, " in grace until "+formatTime(ends))
		r.Data["grace_ends"] = ends.UTC().Format(time.RFC3339)
		rs = append(rs, r)
	}
	if len(warned) > 0 {
		rs = append(rs, v.reason(Warn, v.Warn, warned, ""))
	}
	if f.DBMaxAge > 0 && f.Now.Sub(f.DBBuiltAt) > f.DBMaxAge {
		// The server's limit reports; the findings of the old database
		// still count, since they are the best there is.
		rs = append(rs, Reason{
			Code: CodeEvaluationError, Verdict: Warn,
			Message: fmt.Sprintf("vulnerability database stale (built %s, older than %s)", formatTime(f.DBBuiltAt), formatDuration(f.DBMaxAge)),
			Data:    map[string]any{"source": "database", "built": f.DBBuiltAt.UTC().Format(time.RFC3339), "max_age": formatDuration(f.DBMaxAge)},
		})
	}
	return rs
}

// judge decides what one finding asks for; false when it does not count
// (below thresholds, not fixable under fixable_only, or allowlisted).
func (v *VulnRule) judge(x Vulnerability, f Facts) (vulnHit, bool) {
	h := vulnHit{Vulnerability: x}
	rank := severityRank(x.Severity)
	switch {
	case v.Block != "" && rank >= severityRank(v.Block):
		h.verdict = Block
	case v.Warn != "" && rank >= severityRank(v.Warn):
		h.verdict = Warn
	default:
		return h, false
	}
	if v.FixableOnly && len(x.FixedVersions) == 0 {
		return h, false
	}
	for _, e := range v.Allow {
		if !e.matches(x) {
			continue
		}
		if e.Expires.IsZero() || f.Now.Before(e.Expires) {
			return h, false
		}
		// Expired entries no longer apply, and the message says so, so
		// whoever renewed nothing learns why pulls started failing.
		if e.Expires.After(h.expired) {
			h.expired = e.Expires
		}
	}
	// Grace: a digest that was already being pulled keeps pulling, with a
	// warning, until the vulnerability is Grace old. The window is anchored
	// on the vulnerability, not on the digest, so a long-established digest
	// gets the full grace when news breaks; without a publication date the
	// window has no end, so there is no grace.
	if h.verdict == Block && v.Grace > 0 && !f.FirstAllowedAt.IsZero() && !x.Published.IsZero() {
		if ends := x.Published.Add(v.Grace); f.Now.Before(ends) {
			h.verdict, h.graceEnds = Warn, ends
		}
	}
	return h, true
}

func (e AllowEntry) matches(x Vulnerability) bool {
	if strings.EqualFold(e.ID, x.ID) {
		return true
	}
	return slices.ContainsFunc(x.Aliases, func(a string) bool { return strings.EqualFold(e.ID, a) })
}

// reason builds one VULNERABLE reason: "2 fixable HIGH vulnerabilities
// (CVE-2024-0001 openssl 3.0.1 → 3.0.8, …)". Counts are of distinct
// vulnerability IDs; the same ID in two packages is one vulnerability.
func (v *VulnRule) reason(verdict Verdict, threshold string, hits []vulnHit, note string) Reason {
	slices.SortStableFunc(hits, func(a, b vulnHit) int {
		return cmp.Or(
			severityRank(b.Severity)-severityRank(a.Severity),
			cmp.Compare(b.Score, a.Score),
			cmp.Compare(a.ID, b.ID),
			cmp.Compare(a.Package, b.Package),
		)
	})
	counts := map[string]int{}
	seen := map[string]bool{}
	var items []string
	var list []map[string]any
	for _, h := range hits {
		list = append(list, h.data())
		if seen[h.ID] {
			continue
		}
		seen[h.ID] = true
		sev := strings.ToUpper(h.Severity)
		if severityRank(sev) == 0 {
			sev = SeverityUnknown
		}
		counts[sev]++
		items = append(items, h.item())
	}
	if len(items) > maxListed {
		items = append(items[:maxListed], fmt.Sprintf("+%d more", len(items)-maxListed))
	}
	var parts []string
	total := 0
	for _, s := range severities() {
		if n := counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
			total += n
		}
	}
	fixable := ""
	if v.FixableOnly {
		fixable = "fixable "
	}
	// "2 fixable HIGH vulnerabilities", or with several levels
	// "3 fixable vulnerabilities: 1 CRITICAL and 2 HIGH".
	var head string
	if len(parts) == 1 {
		n, sev, _ := strings.Cut(parts[0], " ")
		head = fmt.Sprintf("%s %s%s %s", n, fixable, sev, plural(total, "vulnerability", "vulnerabilities"))
	} else {
		head = fmt.Sprintf("%d %svulnerabilities: %s", total, fixable, joinAnd(parts))
	}
	return Reason{
		Code:    CodeVulnerable,
		Verdict: verdict,
		Message: head + note + " (" + strings.Join(items, ", ") + ")",
		Data: map[string]any{
			"threshold": threshold, "fixable_only": v.FixableOnly,
			"counts": counts, "vulnerabilities": list,
		},
	}
}

// item names a vulnerability the way a person fixes it:
// "CVE-2024-0001 openssl 3.0.1 → 3.0.8".
func (h vulnHit) item() string {
	s := strings.Join(strings.Fields(h.ID+" "+h.Package+" "+h.InstalledVersion), " ")
	if len(h.FixedVersions) > 0 {
		s += " → " + h.FixedVersions[0]
	}
	if !h.expired.IsZero() {
		s += " [allowlist entry expired " + formatTime(h.expired) + "]"
	}
	return oneLine(s)
}

func (h vulnHit) data() map[string]any {
	d := map[string]any{
		"id": h.ID, "package": h.Package, "installed_version": h.InstalledVersion,
		"severity": h.Severity, "verdict": string(h.verdict),
	}
	if len(h.Aliases) > 0 {
		d["aliases"] = h.Aliases
	}
	if len(h.FixedVersions) > 0 {
		d["fixed_versions"] = h.FixedVersions
	}
	if h.Score > 0 {
		d["score"] = h.Score
	}
	if !h.Published.IsZero() {
		d["published"] = h.Published.UTC().Format(time.RFC3339)
	}
	if !h.expired.IsZero() {
		d["allowlist_expired"] = h.expired.UTC().Format(time.RFC3339)
	}
	if !h.graceEnds.IsZero() {
		d["grace_ends"] = h.graceEnds.UTC().Format(time.RFC3339)
	}
	return d
}

// joinAnd writes "a", "a and b", "a, b and c".
func joinAnd(parts []string) string {
	if len(parts) <= 1 {
		return strings.Join(parts, "")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
