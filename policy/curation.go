package policy

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Sources a rule may give (Rule.Source). The zero value allows: a rule
// refuses a source only when it says so.
const (
	SourceAllow = "allow"
	SourceBlock = "block"
)

// Bounds of the curation fields, so a policy file cannot make every
// refusal message or every pull's tag check arbitrarily large.
const (
	MaxReasonLength    = 512 // bytes of Rule.Reason
	MaxTagPatterns     = 100 // entries of tags.block
	maxTagPatternBytes = 128 // a tag is at most 128 characters (distribution spec)
)

// TagRule refuses pulls by tag: by the tag's name (Block, globs where '*'
// is any run of characters and '?' one character), or every pull by tag
// (RequireDigest: the reference must be a digest, as a pinned production
// cluster wants).
type TagRule struct {
	Block         []string `json:"block,omitempty"`
	RequireDigest bool     `json:"require_digest,omitempty"`
}

// Curate judges a request by the rule's curation fields alone — its
// source and the reference it names — before anything is fetched.
// reference is the tag or digest of a manifest request, or "" for a
// request that names none (tags/list, blobs, referrers). It returns the
// refusing reason, if any; the caller applies the rule's mode.
//
// A digest reference never meets the tag rules: the manifests an index
// lists are pulled by digest and stay pullable however its tag is judged.
func Curate(r Rule, reference string) (Reason, bool) {
	if r.Source == SourceBlock {
		return sourceReason(r), true
	}
	if r.Tags == nil || reference == "" || isDigestReference(reference) {
		return Reason{}, false
	}
	for _, pat := range r.Tags.Block {
		if globMatch(pat, reference) {
			msg := fmt.Sprintf("tag %q is blocked (rule %q blocks tags %s", reference, r.Name, strings.Join(r.Tags.Block, ", "))
			return Reason{
				Code: CodeTagBlocked, Verdict: Block, Message: withRuleReason(msg, r.Reason),
				Data: map[string]any{"rule": r.Name, "tag": reference, "pattern": pat, "blocked_tags": r.Tags.Block, "reason": r.Reason},
			}, true
		}
	}
	if r.Tags.RequireDigest {
		msg := fmt.Sprintf("pull by tag %q refused: pull by digest (@sha256:…) (rule %q requires a digest", reference, r.Name)
		return Reason{
			Code: CodeDigestRequired, Verdict: Block, Message: withRuleReason(msg, r.Reason),
			Data: map[string]any{"rule": r.Name, "tag": reference, "reason": r.Reason},
		}, true
	}
	return Reason{}, false
}

// Curate selects the rule for upstream and repo and judges the request
// with it (see the function Curate). The decision carries the rule's mode:
// Effective is block only in enforce mode; warn serves with a warning and
// audit only records, as modes do everywhere.
func (p *Policy) Curate(upstream, repo, reference string) (Decision, bool) {
	if !p.curates(reference) {
		return Decision{}, false
	}
	r := p.Select(upstream, repo)
	reason, refused := Curate(r, reference)
	if !refused {
		return Decision{}, false
	}
	mode := r.Mode
	if mode == "" {
		mode = defaultMode
	}
	return Decision{
		Verdict: Block, Effective: mode.apply(Block), Reasons: []Reason{reason},
		Mode: mode, PolicyVersion: r.PolicyVersion, Rule: r.Name,
	}, true
}

// curates reports whether any rule could refuse a request naming
// reference: it runs on every blob GET, and most policies curate nothing,
// so the rule selection is skipped when no rule refuses sources (or, for a
// tag, has tag rules).
func (p *Policy) curates(reference string) bool {
	if p == nil {
		return false
	}
	byTag := reference != "" && !isDigestReference(reference)
	for i := range p.Rules {
		if p.Rules[i].Source == SourceBlock || byTag && p.Rules[i].Tags != nil {
			return true
		}
	}
	return false
}

// checkSource is the curation reason Evaluate reports: a source the rule
// refuses is refused whatever the reference, so it belongs to the stored
// verdict of every digest of that repository. Tag rules judge a request,
// not a digest, and are left to Curate: a digest pulled once by a tag
// that is blocked later must stay pullable by its digest.
func checkSource(r Rule) []Reason {
	if r.Source != SourceBlock {
		return nil
	}
	return []Reason{sourceReason(r)}
}

func sourceReason(r Rule) Reason {
	return Reason{
		Code: CodeSourceBlocked, Verdict: Block,
		Message: withRuleReason(fmt.Sprintf("not an approved source (rule %q", r.Name), r.Reason),
		Data:    map[string]any{"rule": r.Name, "source": SourceBlock, "reason": r.Reason},
	}
}

// withRuleReason closes the parenthesis msg opened, with the rule's
// reason after a colon when it has one.
func withRuleReason(msg, reason string) string {
	if reason != "" {
		return msg + ": " + reason + ")"
	}
	return msg + ")"
}

func isDigestReference(ref string) bool { return strings.Contains(ref, ":") }

// checkReason reports what is wrong with a rule's reason: it is shown to
// clients on one line.
func checkReason(s string) error {
	switch {
	case len(s) > MaxReasonLength:
		return fmt.Errorf("reason is %d bytes; at most %d (it is shown to clients on one line)", len(s), MaxReasonLength)
	case !utf8.ValidString(s):
		return fmt.Errorf("reason is not valid UTF-8")
	case strings.TrimSpace(s) == "":
		return fmt.Errorf("empty reason (leave the key out for none)")
	case strings.ContainsFunc(s, unicode.IsControl):
		return fmt.Errorf("reason must be one line of text, without control characters")
	}
	return nil
}

// checkTagPattern reports what is wrong with a tags.block pattern: a tag
// (distribution spec grammar) in which '*' and '?' may stand for
// characters.
func checkTagPattern(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty tag pattern")
	case len(p) > maxTagPatternBytes:
		return fmt.Errorf("tag pattern %.20q… is longer than %d characters, the longest a tag can be", p, maxTagPatternBytes)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_.-*?", c) >= 0) {
			return fmt.Errorf("tag pattern %q: %q cannot appear in a tag (letters, digits, '_', '.', '-'; '*' and '?' as wildcards)", p, p[i:i+1])
		}
	}
	return nil
}
