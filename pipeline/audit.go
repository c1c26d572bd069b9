package pipeline

import (
	"context"
	"fmt"

	"github.com/portcullis/portcullis/store"
)

// EventAudit announces an audit record: an operator's quarantine or
// exception and their ends, a policy put in force, a summary of pulls the
// curation rules refused. Event.Audit holds the record.
const EventAudit = "audit"

// Audit appends rec to the store's audit log, then announces it to every
// replica's subscribers (and so to webhooks). The record comes first: an
// announcement of a change that is not on the record would be worse than
// a record nobody was told of. It returns rec as stored (ID and time set).
func (p *Pipeline) Audit(ctx context.Context, rec store.AuditRecord) (store.AuditRecord, error) {
	if rec.Replica == "" {
		rec.Replica = p.o.Consumer
	}
	if err := p.o.Store.AppendAudit(ctx, &rec); err != nil {
		return store.AuditRecord{}, fmt.Errorf("record %s of %s: %w", rec.Kind, rec.What, err)
	}
	announced := rec
	p.publish(Event{Type: EventAudit, At: rec.At, Digest: digestOrEmpty(rec.What), Audit: &announced})
	return rec, nil
}

// digestOrEmpty is what when it names a digest (a quarantine's or an
// exception's subject), so subscribers that follow one image see it.
func digestOrEmpty(what string) string {
	if len(what) == len("sha256:")+64 && what[:7] == "sha256:" {
		return what
	}
	return ""
}
