package controls

import (
	"context"
	"errors"
	"fmt"

	"github.com/portcullis/portcullis/store"
)

// maxSweptPerRound bounds the deletes of one sweep; the rest go in the
// next (they stopped applying at their expiry already).
const maxSweptPerRound = 1000

// Sweep removes the expired quarantines and exceptions of the view from
// the store, each only while it is the very grant that expired (one
// re-added or extended meanwhile stays), and records one audit record per
// removal: of several replicas sweeping, only the one whose delete
// succeeded writes it.
func (v *View) Sweep(ctx context.Context) error {
	now := v.o.Now()
	var quarantines []store.Quarantine
	var exceptions []store.Exception
	v.mu.RLock()
	for _, q := range v.quarantines {
		if len(quarantines) < maxSweptPerRound && !q.Expires.IsZero() && !now.Before(q.Expires) {
			quarantines = append(quarantines, q)
		}
	}
	for _, list := range v.exceptions {
		for _, e := range list {
			if len(quarantines)+len(exceptions) < maxSweptPerRound && !now.Before(e.Expires) {
				exceptions = append(exceptions, e)
			}
		}
	}
	v.mu.RUnlock()
	if len(quarantines)+len(exceptions) == 0 {
		return nil
	}
	var errs []error
	for _, q := range quarantines {
		done, err := v.st.DeleteQuarantineIf(ctx, q)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if done {
			v.record(ctx, store.AuditRecord{Kind: store.AuditQuarantineExpired, What: q.Digest, Why: q.Reason,
				Details: map[string]string{"expires": q.Expires.UTC().Format(timeLayout), "createdBy": q.CreatedBy}})
		}
	}
	for _, e := range exceptions {
		done, err := v.st.DeleteExceptionIf(ctx, e)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if done {
			// Named as the API names an exception's records: by its digest,
			// the exception's id in the details.
			v.record(ctx, store.AuditRecord{Kind: store.AuditExceptionExpired, What: e.Digest, Why: e.Reason,
				Details: map[string]string{"exception": e.ID, "repository": e.Repository,
					"expires": e.Expires.UTC().Format(timeLayout), "createdBy": e.CreatedBy}})
		}
	}
	// What was swept, here or by another replica, leaves the view now.
	if err := v.Refresh(ctx); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sweep expired controls: %w", err)
	}
	return nil
}

// record writes an expiry to the audit log. The entry is gone from the
// store already: a failed write is logged, not retried (a retry could not
// tell it had not been written).
func (v *View) record(ctx context.Context, rec store.AuditRecord) {
	rec.Who, rec.At, rec.Replica = "portcullis", v.o.Now(), v.o.Replica
	if err := v.o.Audit(ctx, rec); err != nil {
		v.log.Warn("record an expiry in the audit log", "kind", rec.Kind, "what", rec.What, "err", err)
	}
}
