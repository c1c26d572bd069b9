package alerts

import (
	"strings"

	"github.com/portcullis/portcullis/store"
)

// auditSentence says an audit record in one readable line, for chat:
// "ci quarantined sha256:… : reason (until …)". Every value is the
// record's own, which an operator or a policy file wrote: it is kept on
// one line so a reason cannot forge further lines of the message.
func auditSentence(r store.AuditRecord) string {
	who, what, why := oneLine(r.Who), oneLine(r.What), oneLine(r.Why)
	d := func(k string) string { return oneLine(r.Details[k]) }
	var s string
	switch r.Kind {
	case store.AuditQuarantine:
		s = who + " quarantined " + what
	case store.AuditRelease:
		s = who + " lifted the quarantine of " + what
	case store.AuditQuarantineExpired:
		s = "the quarantine of " + what + " expired"
	case store.AuditException:
		s = who + " granted exception " + d("exception") + " for " + what
		if d("repository") != "" {
			s += " in " + d("repository")
		}
	case store.AuditExceptionRemoved:
		s = who + " withdrew exception " + d("exception") + " for " + what
	case store.AuditExceptionExpired:
		s = "exception " + d("exception") + " for " + what + " expired"
	case store.AuditPolicyReload:
		s = who + " put policy " + what + " in force"
	default:
		s = who + " " + oneLine(r.Kind) + " " + what
	}
	if why != "" {
		s += " : " + why
	}
	if until := d("expires"); until != "" && (r.Kind == store.AuditQuarantine || r.Kind == store.AuditException) {
		s += " (until " + until + ")"
	}
	return strings.Join(strings.Fields(s), " ")
}

// auditSubject is what an audit record is about, for a CloudEvent's subject.
func auditSubject(r *store.AuditRecord) string {
	if r == nil {
		return ""
	}
	return oneLine(r.What)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
