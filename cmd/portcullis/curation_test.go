package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/store"
)

func TestCurationAuditRecord(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	counts := []proxy.CurationCount{
		{Rule: "allowlist", Source: "docker.io/library/nginx", Code: "SOURCE_BLOCKED", Count: 7},
		{Rule: "ours", Source: "ghcr.io/acme/api", Code: "TAG_BLOCKED", Count: 2},
		{Rule: proxy.CurationOther, Source: proxy.CurationOther, Code: proxy.CurationOther, Count: 3},
	}
	for i := range maxCurationDetails + 5 {
		counts = append(counts, proxy.CurationCount{Rule: "allowlist", Source: fmt.Sprintf("docker.io/x/y%03d", i), Code: "SOURCE_BLOCKED", Count: 1})
	}
	rec := curationAuditRecord(counts, now)
	if rec.Kind != store.AuditCurationRefusals || rec.Who != "portcullis" || !rec.At.Equal(now) || rec.Why != "117 pulls refused by curation rules" {
		t.Errorf("record %+v", rec)
	}
	// The named groups are the largest, at most maxCurationDetails; the
	// rest (and the tally's own "other") are added up.
	if rec.Details["allowlist docker.io/library/nginx SOURCE_BLOCKED"] != "7" || rec.Details["ours ghcr.io/acme/api TAG_BLOCKED"] != "2" {
		t.Errorf("largest groups missing: %v", rec.Details)
	}
	// 100 named: 2 largest and 98 of the ones; 7 ones and the tally's 3 go
	// to other.
	if rec.Details["total"] != "117" || rec.Details[proxy.CurationOther] != "10" || len(rec.Details) != maxCurationDetails+2 {
		t.Errorf("total %s, other %s, %d details", rec.Details["total"], rec.Details[proxy.CurationOther], len(rec.Details))
	}
}
