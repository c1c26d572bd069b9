package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/store"
)

// curationSummaryEvery is how often the refusals of curation rules are
// recorded in the audit log: one record a minute, however many pulls a
// misconfigured client fleet has refused.
const curationSummaryEvery = time.Minute

// maxCurationDetails bounds one summary record: the groups with the most
// refusals are named, the rest are added up under "other".
const maxCurationDetails = 100

// curationAuditRecord summarises refusals as one audit record: details
// map "rule upstream/repository CODE" to its count, largest first kept.
func curationAuditRecord(counts []proxy.CurationCount, now time.Time) store.AuditRecord {
	counts = slices.Clone(counts)
	slices.SortFunc(counts, func(a, b proxy.CurationCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Source, b.Source), cmp.Compare(a.Code, b.Code))
	})
	details := map[string]string{}
	var total, other int64
	named := 0
	for _, c := range counts {
		total += c.Count
		if named == maxCurationDetails || c.Rule == proxy.CurationOther {
			other += c.Count
			continue
		}
		details[c.Rule+" "+c.Source+" "+c.Code] = strconv.FormatInt(c.Count, 10)
		named++
	}
	if other > 0 {
		details[proxy.CurationOther] = strconv.FormatInt(other, 10)
	}
	details["total"] = strconv.FormatInt(total, 10)
	return store.AuditRecord{
		At: now, Kind: store.AuditCurationRefusals, Who: "portcullis", What: "curation",
		Why:     fmt.Sprintf("%d pulls refused by curation rules", total),
		Details: details,
	}
}

// recordCurationRefusals is the flush of the proxy's refusal tally: an
// audit record (stored, announced as an event and to webhooks), and a
// log line when the record cannot be written.
func recordCurationRefusals(pl *pipeline.Pipeline, log *slog.Logger) func(context.Context, []proxy.CurationCount) {
	return func(ctx context.Context, counts []proxy.CurationCount) {
		rec := curationAuditRecord(counts, time.Now())
		if _, err := pl.Audit(ctx, rec); err != nil {
			log.Warn("record curation refusals in the audit log", "refusals", rec.Details["total"], "summary", proxy.CurationSummary(counts), "err", err)
			return
		}
		log.Info("curation refusals recorded", "refusals", rec.Details["total"], "groups", len(counts))
	}
}
