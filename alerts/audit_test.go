package alerts

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/store"
)

func auditEvent(id, kind, who, why string, details map[string]string) pipeline.Event {
	rec := &store.AuditRecord{ID: id, At: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC), Kind: kind, Who: who, What: testDigest, Why: why,
		RequestID: "req1", Details: details}
	return pipeline.Event{Type: pipeline.EventAudit, ID: "ev-" + id, At: rec.At, Digest: testDigest, Audit: rec}
}

// An audit record reaches each format: Slack as one readable line, json
// and CloudEvents with the record itself.
func TestAuditAlertPerFormat(t *testing.T) {
	until := "2026-12-10T00:00:00Z"
	for _, tc := range []struct {
		format, kind string
		details      map[string]string
		wantText     string
	}{
		{FormatSlack, store.AuditQuarantine, map[string]string{"expires": until}, "ci quarantined " + testDigest + " : incident 42 (until " + until + ")"},
		{FormatSlack, store.AuditRelease, nil, "ci lifted the quarantine of " + testDigest + " : incident 42"},
		{FormatSlack, store.AuditException, map[string]string{"exception": "0123456789abcdef", "repository": "docker.io/team/*", "expires": until},
			"ci granted exception 0123456789abcdef for " + testDigest + " in docker.io/team/* : incident 42 (until " + until + ")"},
		{FormatJSON, store.AuditExceptionRemoved, map[string]string{"exception": "0123456789abcdef"}, "ci withdrew exception 0123456789abcdef for " + testDigest + " : incident 42"},
		{FormatCloudEvents, store.AuditQuarantine, nil, "ci quarantined " + testDigest + " : incident 42"},
	} {
		t.Run(tc.format+"/"+tc.kind, func(t *testing.T) {
			rc := newReceiver(t, nil)
			r := newRig(t, Options{Webhooks: []Webhook{testHook("chat", rc.URL, tc.format, KindAudit)}})
			// A reason with a newline cannot add lines to the message.
			r.send(auditEvent("1-0", tc.kind, "ci", "incident\n42", tc.details))
			got := rc.wait(t, 1)[0]
			switch tc.format {
			case FormatSlack:
				var msg slackMsg
				if err := json.Unmarshal(got.body, &msg); err != nil {
					t.Fatal(err)
				}
				if msg.Text != tc.wantText {
					t.Fatalf("text %q, want %q", msg.Text, tc.wantText)
				}
			case FormatJSON, FormatCloudEvents:
				var doc Document
				raw := got.body
				if tc.format == FormatCloudEvents {
					var ce struct {
						Type, Subject string
						Data          json.RawMessage
					}
					if err := json.Unmarshal(raw, &ce); err != nil || ce.Type != "dev.portcullis.alert.audit" || ce.Subject != testDigest {
						t.Fatalf("%v %+v", err, ce)
					}
					raw = ce.Data
				}
				if err := json.Unmarshal(raw, &doc); err != nil {
					t.Fatal(err)
				}
				if doc.Type != KindAudit || doc.Audit == nil || doc.Audit.ID != "1-0" || doc.Audit.Who != "ci" || doc.Audit.Kind != tc.kind ||
					doc.Digest != testDigest || doc.Summary != tc.wantText {
					t.Fatalf("%s", raw)
				}
			}
		})
	}
}

// The same record (announced twice) is one alert; another record is news.
func TestAuditAlertDedupe(t *testing.T) {
	rc := newReceiver(t, nil)
	r := newRig(t, Options{Webhooks: []Webhook{testHook("ops", rc.URL, FormatJSON, KindAudit)}})
	r.send(auditEvent("1-0", store.AuditQuarantine, "ci", "x", nil))
	r.send(auditEvent("1-0", store.AuditQuarantine, "ci", "x", nil))
	r.send(auditEvent("2-0", store.AuditRelease, "ci", "x", nil))
	r.send(pipeline.Event{Type: pipeline.EventAudit, ID: "no-record"}) // nothing to say
	r.waitCount(t, "ops", "sent", 2)
	r.waitCount(t, "ops", "suppressed", 1)
	time.Sleep(100 * time.Millisecond) // nothing more arrives
	var ids []string
	for _, got := range rc.requests() {
		var doc Document
		_ = json.Unmarshal(got.body, &doc)
		ids = append(ids, doc.Audit.ID)
	}
	if strings.Join(ids, ",") != "1-0,2-0" {
		t.Fatalf("%v", ids)
	}
}
