// Package policy turns facts about one manifest digest into a verdict —
// allow, warn or block — with the reasons behind it.
//
// Everything here is a pure function of its inputs: Parse reads a []byte,
// Evaluate reads a Rule and Facts. Signature verification, scanning and
// looking up tags happen elsewhere and arrive as Facts, so a stored set of
// facts can be re-evaluated against a new policy without touching the
// network (see DESIGN.md, "Re-evaluation").
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/portcullis/portcullis/vex"
)

// Verdict is what a rule decides for a digest.
type Verdict string

// Verdicts, from least to most restrictive.
const (
	Allow Verdict = "allow"
	Warn  Verdict = "warn"
	Block Verdict = "block"
)

func (v Verdict) rank() int {
	switch v {
	case Warn:
		return 1
	case Block:
		return 2
	}
	return 0
}

// worse returns the more restrictive of a and b.
func worse(a, b Verdict) Verdict {
	if b.rank() > a.rank() {
		return b
	}
	if a == "" {
		return Allow
	}
	return a
}

// Mode says what a rule's verdict is allowed to do, so a team can roll a
// policy out in dry run before it blocks anybody.
type Mode string

// Modes. The zero Mode behaves as ModeEnforce: a hand-built Rule that forgets
// its mode must not silently stop blocking.
const (
	ModeEnforce Mode = "enforce" // the verdict stands
	ModeWarn    Mode = "warn"    // block is served as warn (malware excepted: see Rule.Malware)
	ModeAudit   Mode = "audit"   // everything but malware is served; the verdict is only recorded
)

// apply returns the verdict a client experiences under mode m.
func (m Mode) apply(v Verdict) Verdict {
	switch m {
	case ModeAudit:
		return Allow
	case ModeWarn:
		if v == Block {
			return Warn
		}
	}
	return v
}

// Policy is a parsed policy file. Treat it as immutable: Select hands out
// copies of its rules that share their slices.
type Policy struct {
	Rules []Rule `json:"rules"`
	// VEX names OpenVEX documents that apply under every rule; LoadVEX
	// reads them.
	VEX *VEXConfig `json:"vex,omitempty"`

	version    string // computed by Parse (and LoadVEX); Version recomputes when empty
	vexSources []vex.Source
}

// Rule is one entry of the policy's rules list. A nil check section means
// that check is off. Parse fills the defaults documented on each field; a
// Rule built by hand gets the same defaults for its zero values in Evaluate.
type Rule struct {
	// Name identifies the rule in decisions; Parse sets "rules[N]" when the
	// file gives none.
	Name  string `json:"name"`
	Match Match  `json:"match"`
	Mode  Mode   `json:"mode"` // default enforce

	// Source is SourceBlock to refuse every request the rule matches
	// before anything is fetched (curation); "" allows. Reason is shown
	// to clients with a curation refusal. Tags refuses pulls by tag.
	Source string   `json:"source,omitempty"`
	Reason string   `json:"reason,omitempty"`
	Tags   *TagRule `json:"tags,omitempty"`

	Signature       *SignatureRule `json:"signature,omitempty"`
	Freshness       *FreshnessRule `json:"freshness,omitempty"`
	Size            *SizeRule      `json:"size,omitempty"`
	Vulnerabilities *VulnRule      `json:"vulnerabilities,omitempty"`
	// Malware is the verdict on malware findings (malicious packages,
	// known-bad files), whatever the other checks and the mode say; Parse
	// defaults it to block, and so does Evaluate for a zero value.
	Malware Verdict      `json:"malware,omitempty"`
	Secrets *SecretsRule `json:"secrets,omitempty"` // leaked secrets, by kind

	// OnUnscanned applies while facts the rule needs are still being
	// gathered (scan pending, signature not checked yet).
	OnUnscanned OnUnscanned `json:"on_unscanned"`
	// OnError applies when facts could not be gathered: scan failed,
	// verification error, vulnerability database missing or too old.
	// Default block: a gate that cannot judge must not wave images through
	// unless the policy says so.
	OnError Verdict `json:"on_error"`

	// PolicyVersion is stamped by Policy.Select so that Evaluate can record
	// which policy produced a decision. Not part of the content hash.
	PolicyVersion string `json:"-"`
}

// Match selects the digests a rule applies to. An empty list matches
// everything. Patterns are globs: '*' and '?' stay within one path segment,
// '**' crosses '/'. Upstreams compare case-insensitively (host names).
type Match struct {
	Upstreams    []string `json:"upstreams,omitempty"`
	Repositories []string `json:"repositories,omitempty"`
}

// SignatureRule says which signatures count. Evaluate reads only the
// verification result in Facts; Keys, Identities, RequireTlog and
// TrustedRoot are for the verifier.
type SignatureRule struct {
	Required   bool       `json:"required"`
	Keys       []string   `json:"keys,omitempty"` // PEM public key file paths
	Identities []Identity `json:"identities,omitempty"`
	// RequireTlog demands a transparency-log proof for keyless signatures.
	// Parse sets it unless the file says `tlog: false`.
	RequireTlog bool   `json:"tlog"`
	TrustedRoot string `json:"trusted_root,omitempty"` // trusted_root.json path; "" = the server's default
}

// Identity is a keyless signer: an OIDC issuer and a certificate subject,
// each given exactly or as a regular expression (unanchored, as cosign
// matches them).
type Identity struct {
	Issuer        string `json:"issuer,omitempty"`
	IssuerRegexp  string `json:"issuer_regexp,omitempty"`
	Subject       string `json:"subject,omitempty"`
	SubjectRegexp string `json:"subject_regexp,omitempty"`
}

// FreshnessRule limits image age and flags newer releases upstream.
// An empty verdict switches that check off.
type FreshnessRule struct {
	MaxAge time.Duration `json:"max_age,omitempty"`
	// TooOld is the verdict when MaxAge is exceeded; Parse defaults it to
	// block.
	TooOld Verdict `json:"too_old,omitempty"`
	// NewerPatchAvailable fires when a higher patch of the same
	// major.minor exists; NewerReleaseAvailable when any higher release
	// exists (a newer patch included).
	NewerPatchAvailable   Verdict `json:"newer_patch_available,omitempty"`
	NewerReleaseAvailable Verdict `json:"newer_release_available,omitempty"`
}

// SizeRule blocks images over a compressed size or layer count; zero means
// no limit.
type SizeRule struct {
	MaxCompressed int64 `json:"max_compressed,omitempty"` // bytes, sum of layer sizes
	MaxLayers     int   `json:"max_layers,omitempty"`
}

// VulnRule judges scanner findings. Block and Warn are severity thresholds
// ("HIGH" means HIGH and CRITICAL); "" switches that level off.
type VulnRule struct {
	Block       string       `json:"block,omitempty"`
	Warn        string       `json:"warn,omitempty"`
	FixableOnly bool         `json:"fixable_only,omitempty"`
	Allow       []AllowEntry `json:"allow,omitempty"`
	// Grace: a digest first allowed before a vulnerability was published
	// keeps pulling, with a warning, until Published+Grace.
	Grace time.Duration `json:"grace,omitempty"`
	// MaxDBAge turns an outdated vulnerability database into an evaluation
	// error (on_error); zero means any age is fine.
	MaxDBAge time.Duration `json:"max_db_age,omitempty"`
}

// AllowEntry accepts one vulnerability, matched by ID or any alias.
type AllowEntry struct {
	ID string `json:"id"`
	// Expires is the instant the entry stops applying; a date in the file
	// means 00:00 UTC of that day. Zero: never.
	Expires time.Time `json:"expires,omitzero"`
	Reason  string    `json:"reason,omitempty"`
}

// OnUnscanned is what happens before the facts are in. The gate waits up to
// Wait for them; Evaluate, asked while they are still pending, answers Then.
type OnUnscanned struct {
	Wait time.Duration `json:"wait"`
	Then Verdict       `json:"then"` // default block
}

// Parse defaults, in one place so the file format documentation and the
// code agree.
const (
	defaultMode = ModeEnforce
	defaultWait = 30 * time.Second
)

// defaultPolicy is what runs when no policy is configured: DESIGN.md asks
// for "policy in warn mode". It reports serious vulnerabilities but never
// blocks, never delays a first pull (warn mode cannot block, so waiting
// would buy nothing), and lets an image through when a check fails — though
// a missing vulnerability database still tags every image (Evaluate never
// lets that pass silently).
const defaultPolicy = `rules:
  - name: default
    mode: warn
    vulnerabilities:
      block: CRITICAL
      warn: HIGH
    secrets: {warn: any}
    on_unscanned: {wait: 0s, then: allow}
    on_error: allow
`

// Default returns the policy used when none is configured.
func Default() *Policy {
	p, err := Parse([]byte(defaultPolicy))
	if err != nil {
		panic("policy: built-in default does not parse: " + err.Error())
	}
	return p
}

// unmatchedRule is what Select returns when no rule matches: allow
// everything, in warn mode, so an incomplete policy never blocks images it
// does not mention.
func unmatchedRule() Rule {
	return Rule{
		Name:        "unmatched",
		Mode:        ModeWarn,
		OnUnscanned: OnUnscanned{Then: Allow},
		OnError:     Allow,
	}
}

// Version is the policy's content hash, "sha256:<hex>" over a canonical
// encoding of the parsed rules: comments, formatting and key order do not
// change it, so they do not trigger re-evaluation.
func (p *Policy) Version() string {
	if p == nil {
		return ""
	}
	if p.version != "" {
		return p.version
	}
	return contentHash(p.Rules)
}

// canonicalFormat versions the encoding below; bump it if the encoding of
// an unchanged policy ever changes meaning.
const canonicalFormat = "portcullis.policy/v1"

func contentHash(rules []Rule) string {
	if rules == nil {
		rules = []Rule{} // "rules: []" and a zero Policy are the same content
	}
	b, err := json.Marshal(struct {
		Format string `json:"format"`
		Rules  []Rule `json:"rules"`
	}{canonicalFormat, rules})
	if err != nil {
		// Only plain data is encoded; failure is a programming error.
		panic(fmt.Sprintf("policy: encode rules: %v", err))
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Evaluate selects the rule for f's upstream and repository and evaluates
// it. A nil policy evaluates the unmatched rule.
func (p *Policy) Evaluate(f Facts) Decision {
	return Evaluate(p.Select(f.Upstream, f.Repository), f)
}
