package policy

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Evaluate judges facts against one rule. It reads no clock and no files:
// the same rule and facts always give the same decision.
//
// Each check contributes reasons with their own verdict; the decision's
// Verdict is the most severe of them (allow when there are none) and
// Effective is that verdict after the rule's mode, except that the mode
// never softens malware (hardFloor). Reasons are ordered most severe
// first, then malware, vulnerabilities, signature, freshness, size, so
// the start of Decision.Message is what matters most.
func Evaluate(r Rule, f Facts) Decision {
	// A refused source needs no facts: it is refused whatever they are.
	rs := checkSource(r)
	if f.Now.IsZero() {
		// Expiries, grace and age all need it; guessing would make the
		// decision depend on when it is replayed.
		rs = append(rs, errorReason(r, "facts", "no evaluation time in the facts", ""))
	} else {
		rs = append(rs, checkScan(r, f)...)
		rs = append(rs, checkMalware(r, f)...)
		rs = append(rs, checkVulnerabilities(r, f)...)
		rs = append(rs, checkSecrets(r, f)...)
		rs = append(rs, checkSignature(r, f)...)
		rs = append(rs, checkFreshness(r.Freshness, f)...)
		rs = append(rs, checkSize(r.Size, f)...)
	}
	slices.SortStableFunc(rs, func(a, b Reason) int { return b.Verdict.rank() - a.Verdict.rank() })
	v := Allow
	for _, x := range rs {
		v = worse(v, x.Verdict)
	}
	mode := r.Mode
	if mode == "" {
		mode = defaultMode
	}
	return Decision{
		Verdict:       v,
		Effective:     worse(mode.apply(v), hardFloor(rs)),
		Reasons:       rs,
		Mode:          mode,
		PolicyVersion: r.PolicyVersion,
		Rule:          r.Name,
	}
}

// checkScan speaks for the scan's state when a check that judges its
// findings (malware, unless the rule allows it; secrets) has none to judge
// yet. A rule with a vulnerabilities check leaves it to that check, which
// speaks for the database's state as well.
func checkScan(r Rule, f Facts) []Reason {
	if r.Vulnerabilities != nil || (r.Secrets == nil && orBlock(r.Malware) == Allow) {
		return nil
	}
	return unfinishedScan(r, f, "scan failed")
}

// unfinishedScan is what a scan that is not done means to a check of its
// findings: failed is an evaluation error (on_error; failed says what
// failed), pending waits (on_unscanned), an unknown state is an error.
// Nil when the scan is done.
func unfinishedScan(r Rule, f Facts, failed string) []Reason {
	switch {
	case f.ScanState == ScanDone:
		return nil
	case f.ScanState == ScanFailed:
		return []Reason{errorReason(r, "scan", failed, f.ScanError)}
	case f.ScanState == ScanPending || f.ScanState == "":
		return []Reason{unscannedReason(r, "scan", "not scanned yet")}
	}
	return []Reason{errorReason(r, "scan", fmt.Sprintf("unknown scan state %q", f.ScanState), f.ScanError)}
}

// orBlock gives the documented default (block) to a verdict a hand-built
// rule left empty.
func orBlock(v Verdict) Verdict {
	if v == "" {
		return Block
	}
	return v
}

func errorReason(r Rule, source, msg, detail string) Reason {
	data := map[string]any{"source": source}
	if detail != "" {
		detail = oneLine(detail)
		data["error"] = detail
		msg += " (" + detail + ")"
	}
	return Reason{Code: CodeEvaluationError, Verdict: orBlock(r.OnError), Message: msg, Data: data}
}

func unscannedReason(r Rule, what, msg string) Reason {
	return Reason{
		Code: CodeUnscanned, Verdict: orBlock(r.OnUnscanned.Then), Message: msg,
		Data: map[string]any{"pending": what, "wait": formatDuration(r.OnUnscanned.Wait)},
	}
}

// oneLine keeps an error text from breaking the one-line message format.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "; ", ", ")
}

func checkSignature(r Rule, f Facts) []Reason {
	s := r.Signature
	if s == nil || !s.Required {
		// Not required: the verifier's result is recorded with the facts
		// but decides nothing.
		return nil
	}
	sf := f.Signature
	switch sf.State {
	case SignatureVerified:
		if len(sf.Signers) == 0 || slices.ContainsFunc(sf.Signers, s.allows) {
			return nil
		}
		// Facts verified under an older policy: the signer is no longer
		// one this rule trusts.
		return []Reason{{
			Code: CodeSignatureInvalid, Verdict: Block,
			Message: s.notAllowed() + " (signed by " + oneLine(describeSigners(sf.Signers)) + ")",
			Data:    map[string]any{"signers": signersData(sf.Signers)},
		}}
	case SignatureUnsigned:
		return []Reason{{Code: CodeUnsigned, Verdict: Block, Message: "not signed"}}
	case SignatureInvalid:
		msg := s.notAllowed()
		var data map[string]any
		if sf.Error != "" {
			msg += " (" + oneLine(sf.Error) + ")"
			data = map[string]any{"error": oneLine(sf.Error)}
		}
		return []Reason{{Code: CodeSignatureInvalid, Verdict: Block, Message: msg, Data: data}}
	case SignatureError:
		return []Reason{errorReason(r, "signature", "signature verification failed", sf.Error)}
	case SignatureNotChecked, "":
		return []Reason{unscannedReason(r, "signature", "signature not checked yet")}
	}
	return []Reason{errorReason(r, "signature", fmt.Sprintf("unknown signature state %q", sf.State), sf.Error)}
}

func (s *SignatureRule) notAllowed() string {
	switch {
	case len(s.Keys) > 0 && len(s.Identities) > 0:
		return "not signed by an allowed key or identity"
	case len(s.Keys) > 0:
		return "not signed by an allowed key"
	}
	return "not signed by an allowed identity"
}

// allows reports whether a verified signer is one this rule trusts. Key
// signers cannot be matched here (the rule names key files, which only the
// verifier reads), so any key signer is accepted when the rule has keys;
// keyless signers must match an identity the way cosign matches them.
func (s *SignatureRule) allows(sg Signer) bool {
	if sg.Issuer == "" && sg.Subject == "" {
		return len(s.Keys) > 0
	}
	for _, id := range s.Identities {
		if matchField(id.Issuer, id.IssuerRegexp, sg.Issuer) && matchField(id.Subject, id.SubjectRegexp, sg.Subject) {
			return true
		}
	}
	return false
}

func matchField(exact, re, v string) bool {
	if exact != "" && exact != v {
		return false
	}
	if re != "" {
		// Parse has compiled it already; a hand-built rule with a bad
		// expression matches nothing rather than everything.
		ok, err := regexp.MatchString(re, v)
		return err == nil && ok
	}
	return exact != "" || re != ""
}

func describeSigners(ss []Signer) string {
	var out []string
	for _, s := range ss {
		switch {
		case s.Subject != "" || s.Issuer != "":
			out = append(out, s.Subject+" from "+s.Issuer)
		default:
			out = append(out, "key "+s.KeyID)
		}
	}
	return strings.Join(out, ", ")
}

func signersData(ss []Signer) []map[string]any {
	out := make([]map[string]any, 0, len(ss))
	for _, s := range ss {
		out = append(out, map[string]any{"key_id": s.KeyID, "issuer": s.Issuer, "subject": s.Subject})
	}
	return out
}

func checkFreshness(fr *FreshnessRule, f Facts) []Reason {
	if fr == nil {
		return nil
	}
	var rs []Reason
	// Reproducible builds stamp created as the Unix epoch (or leave it
	// zero); such an image's age is unknown, not 56 years.
	if fr.MaxAge > 0 && f.Created.Unix() > 0 {
		if age := f.Now.Sub(f.Created); age > fr.MaxAge {
			days := int(age / day)
			rs = append(rs, Reason{
				Code: CodeTooOld, Verdict: orBlock(fr.TooOld),
				Message: fmt.Sprintf("image is %d days old (built %s, max %s)", days, f.Created.UTC().Format(time.DateOnly), formatDuration(fr.MaxAge)),
				Data: map[string]any{
					"created": f.Created.UTC().Format(time.RFC3339), "age_days": days,
					"max_age": formatDuration(fr.MaxAge),
				},
			})
		}
	}
	if fr.NewerPatchAvailable == "" && fr.NewerReleaseAvailable == "" {
		return rs
	}
	patch, overall := NewerReleases(f.Tags, f.CurrentTag)
	v := Allow
	var msg string
	switch {
	case fr.NewerReleaseAvailable != "" && overall != "":
		v = fr.NewerReleaseAvailable
		msg = "newer release " + overall + " available"
		if patch != "" && patch != overall {
			msg += " (patch " + patch + ")"
		}
		if fr.NewerPatchAvailable != "" && patch != "" {
			v = worse(v, fr.NewerPatchAvailable)
		}
	case fr.NewerPatchAvailable != "" && patch != "":
		v = fr.NewerPatchAvailable
		msg = "newer patch " + patch + " available"
	default:
		return rs
	}
	// The least disruptive upgrade first.
	suggested := cmp.Or(patch, overall)
	return append(rs, Reason{
		Code: CodeNewerRelease, Verdict: v, Message: msg,
		Data: map[string]any{
			"current": f.CurrentTag, "newest_patch": patch, "newest_release": overall,
			"suggested": suggested,
		},
	})
}

func checkSize(s *SizeRule, f Facts) []Reason {
	if s == nil {
		return nil
	}
	var rs []Reason
	if s.MaxCompressed > 0 && f.CompressedSize > s.MaxCompressed {
		rs = append(rs, Reason{
			Code: CodeTooLarge, Verdict: Block,
			Message: fmt.Sprintf("compressed size %s exceeds %s", formatSize(f.CompressedSize), formatSize(s.MaxCompressed)),
			Data:    map[string]any{"compressed_size": f.CompressedSize, "max_compressed": s.MaxCompressed},
		})
	}
	if s.MaxLayers > 0 && f.LayerCount > s.MaxLayers {
		rs = append(rs, Reason{
			Code: CodeTooManyLayers, Verdict: Block,
			Message: fmt.Sprintf("%d layers exceed the limit of %d", f.LayerCount, s.MaxLayers),
			Data:    map[string]any{"layers": f.LayerCount, "max_layers": s.MaxLayers},
		})
	}
	return rs
}
