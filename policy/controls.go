package policy

// Reason codes of curation (a rule that refuses a source or a reference
// before anything is fetched) and of the operators' controls laid over a
// rule's verdict (quarantine, exception).
const (
	CodeSourceBlocked  = "SOURCE_BLOCKED"  // the rule refuses the repository (source: block)
	CodeTagBlocked     = "TAG_BLOCKED"     // the tag matches one of the rule's tags.block patterns
	CodeDigestRequired = "DIGEST_REQUIRED" // the rule's tags.require_digest refuses pulls by tag
	CodeQuarantined    = "QUARANTINED"     // an operator quarantined the digest
	CodeException      = "EXCEPTION"       // an operator's exception lets a blocked digest through as warn
)

// unwaivable are the codes no exception overrides: what an operator
// refused on purpose (quarantine, curation), and what says the image is
// hostile or not what its publisher signed (malware, a signature that
// does not verify). A missing signature is a policy requirement, and
// waivable.
var unwaivable = map[string]bool{
	CodeSourceBlocked: true, CodeTagBlocked: true, CodeDigestRequired: true,
	CodeQuarantined: true, CodeMalware: true, CodeSignatureInvalid: true,
}

// Waivable reports whether an exception may let a reason with code
// through.
func Waivable(code string) bool { return !unwaivable[code] }

// Unwaivable returns the blocking reasons of d that no exception
// overrides; an exception applies only to a decision with none.
func (d Decision) Unwaivable() []Reason {
	var out []Reason
	for _, r := range d.Reasons {
		if r.Verdict == Block && !Waivable(r.Code) {
			out = append(out, r)
		}
	}
	return out
}
