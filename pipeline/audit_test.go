package pipeline_test

import (
	"context"
	"testing"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/store"
)

// An audit record is kept in the store and announced, with its ID, to
// the subscribers.
func TestAuditRecordsAndAnnounces(t *testing.T) {
	r := newRig(t)
	pl := r.pipeline(t)
	events, unsubscribe := pl.Subscribe()
	defer unsubscribe()
	d := "sha256:a0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde"
	rec, err := pl.Audit(context.Background(), store.AuditRecord{Kind: store.AuditQuarantine, Who: "ci", What: d, Why: "CVE-2026-1"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID == "" || rec.At.IsZero() {
		t.Fatalf("stored record %+v lacks its ID or time", rec)
	}
	var stored []store.AuditRecord
	if err := r.state.Audit(context.Background(), store.AuditQuery{}, func(a store.AuditRecord) bool { stored = append(stored, a); return true }); err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || stored[0].ID != rec.ID || stored[0].Why != "CVE-2026-1" {
		t.Fatalf("audit log holds %+v", stored)
	}
	e := nextEvent(t, events, pipeline.EventAudit)
	if e.Audit == nil || e.Audit.ID != rec.ID || e.Audit.Kind != store.AuditQuarantine || e.Digest != d {
		t.Fatalf("audit event %+v", e)
	}
}
