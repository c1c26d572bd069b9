package policy

import (
	"strings"
	"time"

	"github.com/portcullis/portcullis/vex"
)

// Facts is everything known about one manifest digest when it is judged.
// The pipeline gathers them; Evaluate only reads them.
type Facts struct {
	Upstream, Repository, Reference, Digest string

	Signature       SignatureFacts
	Vulnerabilities []Vulnerability
	// Suppressed and VEXNotes: what VEX did to the findings before they
	// became Vulnerabilities (see Decision.Suppressed).
	Suppressed []vex.Suppressed
	VEXNotes   []string

	Created    time.Time // image config "created"; zero if unknown
	Tags       []string  // the repository's tags upstream, for freshness
	CurrentTag string    // the tag the client asked for, if any

	CompressedSize int64 // sum of layer sizes
	LayerCount     int

	ScanState string // ScanPending, ScanDone or ScanFailed
	ScanError string
	DBBuiltAt time.Time // vulnerability database build time; zero: no database
	// DBMaxAge is the server's vulndb.max_age: a database older than this
	// tags the image (warn) without discarding its findings; a rule's own
	// max_db_age judges instead (on_error). Zero: never.
	DBMaxAge time.Duration

	// FirstAllowedAt is when this digest was first allowed; zero if never.
	// It decides whether a vulnerability is "new" to the digest (grace).
	FirstAllowedAt time.Time
	// Now is the evaluation time. Evaluate never reads the clock, so the
	// same facts always give the same decision.
	Now time.Time
}

// Scan states.
const (
	ScanPending = "pending"
	ScanDone    = "done"
	ScanFailed  = "failed"
)

// SignatureFacts is the verifier's result for a digest, checked against the
// selected rule's keys and identities.
type SignatureFacts struct {
	State   string   `json:"state"` // one of the Signature* constants
	Signers []Signer `json:"signers,omitempty"`
	Error   string   `json:"error,omitempty"`
}

// Signature states.
const (
	SignatureVerified   = "verified"
	SignatureUnsigned   = "unsigned"
	SignatureInvalid    = "invalid" // signatures exist, none verifies against the rule
	SignatureError      = "error"   // verification could not run (network, trusted root, …)
	SignatureNotChecked = "not-checked"
)

// Signer is who made a verified signature: KeyID for key pairs, Issuer and
// Subject for keyless certificates.
type Signer struct {
	KeyID   string `json:"key_id,omitempty"`
	Issuer  string `json:"issuer,omitempty"`
	Subject string `json:"subject,omitempty"`
}

// Kinds of finding, as vulndb.Finding.Kind (a vulnerability has none).
const (
	KindMalware = "malware" // a malicious package or a known-bad file
	KindSecret  = "secret"  // a leaked credential
)

// Vulnerability is one scanner finding: one vulnerability in one package,
// or (Kind) a malicious package, a known-bad file or a leaked secret.
type Vulnerability struct {
	Kind             string // "" (a vulnerability), "malware" or "secret", as vulndb.Finding
	ID               string
	Path             string // where a file finding is: a path in the image, or config:…
	Aliases          []string
	Ecosystem        string // the package's OSV ecosystem ("npm"), for messages
	Package          string
	InstalledVersion string
	FixedVersions    []string
	Severity         string // one of the Severity* constants
	Score            float64
	Published        time.Time // zero if unknown
}

// Severity levels, as the scanner reports them.
const (
	SeverityCritical = "CRITICAL"
	SeverityHigh     = "HIGH"
	SeverityMedium   = "MEDIUM"
	SeverityLow      = "LOW"
	SeverityUnknown  = "UNKNOWN"
)

// severityRank orders levels: UNKNOWN 0 … CRITICAL 4, the same order the
// vulnerability database uses. Anything unrecognised ranks as UNKNOWN.
func severityRank(s string) int {
	switch strings.ToUpper(s) {
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

// severities lists the levels from most to least severe.
func severities() []string {
	return []string{SeverityCritical, SeverityHigh, SeverityMedium, SeverityLow, SeverityUnknown}
}

// Reason codes. They are stable: dashboards, admission controllers and
// scripts match on them.
const (
	CodeUnsigned         = "UNSIGNED"
	CodeSignatureInvalid = "SIGNATURE_INVALID"
	CodeTooOld           = "TOO_OLD"
	CodeNewerRelease     = "NEWER_RELEASE"
	CodeTooLarge         = "TOO_LARGE"
	CodeTooManyLayers    = "TOO_MANY_LAYERS"
	CodeVulnerable       = "VULNERABLE"
	CodeUnscanned        = "UNSCANNED"
	CodeEvaluationError  = "EVALUATION_ERROR"
)

// ReasonCodes lists every reason code above: the fixed set counters of
// blocked pulls are kept by (anything else counts as OTHER).
func ReasonCodes() []string {
	return []string{CodeUnsigned, CodeSignatureInvalid, CodeTooOld, CodeNewerRelease, CodeTooLarge,
		CodeTooManyLayers, CodeVulnerable, CodeUnscanned, CodeEvaluationError,
		CodeMalware, CodeSecret, CodeSourceBlocked, CodeTagBlocked, CodeDigestRequired,
		CodeQuarantined, CodeException}
}

// Reason is one finding of a rule. Verdict is what this reason alone asks
// for; the decision's verdict is the most severe of them.
type Reason struct {
	Code    string         `json:"code"`
	Verdict Verdict        `json:"verdict"`
	Message string         `json:"message"` // "headline (details)"; see Decision.Message
	Data    map[string]any `json:"data,omitempty"`
}

// Decision is the result of evaluating one rule against one digest's facts.
type Decision struct {
	Verdict       Verdict  `json:"verdict"`   // what the rule decided
	Effective     Verdict  `json:"effective"` // what the client gets after Mode
	Reasons       []Reason `json:"reasons,omitempty"`
	Mode          Mode     `json:"mode"`
	PolicyVersion string   `json:"policy_version,omitempty"`
	Rule          string   `json:"rule"`
	// Suppressed are the findings VEX statements removed before the rule
	// judged, with the statement that did; VEX notes what VEX was read but
	// not honoured (unsigned attestations, statements without
	// justification). The pipeline fills both from Facts.
	Suppressed []vex.Suppressed `json:"suppressed,omitempty"`
	VEX        []string         `json:"vex,omitempty"`
}

// Has reports whether any reason carries code — e.g. the gate keeps waiting
// while a decision has UNSCANNED.
func (d Decision) Has(code string) bool {
	for _, r := range d.Reasons {
		if r.Code == code {
			return true
		}
	}
	return false
}
