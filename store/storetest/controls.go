package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/portcullis/portcullis/store"
)

// RunControls checks quarantines and exceptions: put, replace, delete,
// ordered paging, the version every change advances.
func RunControls(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Run("Controls", func(t *testing.T) {
		ctx := context.Background()
		s := newStore(t)
		version := func() uint64 {
			t.Helper()
			v, err := s.ControlsVersion(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		v0 := version()
		at := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
		for _, n := range []int{3, 1, 2} {
			if err := s.PutQuarantine(ctx, store.Quarantine{Digest: digestN(n), Reason: fmt.Sprint("r", n), CreatedAt: at, CreatedBy: "ci"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.PutQuarantine(ctx, store.Quarantine{Digest: digestN(2), Reason: "replaced", CreatedAt: at, Expires: at.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		v1 := version()
		if v1 <= v0 {
			t.Fatalf("version %d after puts, %d before", v1, v0)
		}
		var got []store.Quarantine
		if err := s.Quarantines(ctx, "", func(q store.Quarantine) bool { got = append(got, q); return true }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 || got[0].Digest != digestN(1) || got[1].Digest != digestN(2) || got[2].Digest != digestN(3) {
			t.Fatalf("quarantines = %+v, want 1, 2, 3 in digest order", got)
		}
		if got[1].Reason != "replaced" || !got[1].Expires.Equal(at.Add(time.Hour)) || !got[0].CreatedAt.Equal(at) || got[0].CreatedBy != "ci" {
			t.Fatalf("quarantines read back as %+v", got)
		}
		var page []string
		if err := s.Quarantines(ctx, digestN(1), func(q store.Quarantine) bool { page = append(page, q.Digest); return len(page) < 1 }); err != nil {
			t.Fatal(err)
		}
		if len(page) != 1 || page[0] != digestN(2) {
			t.Fatalf("page after %s = %v, want [%s]", digestN(1), page, digestN(2))
		}
		q, err := s.DeleteQuarantine(ctx, digestN(1))
		if err != nil || q.Reason != "r1" {
			t.Fatalf("DeleteQuarantine = %+v, %v", q, err)
		}
		if _, err := s.DeleteQuarantine(ctx, digestN(1)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second DeleteQuarantine: %v, want ErrNotFound", err)
		}
		if v := version(); v <= v1 {
			t.Fatalf("version %d after a delete, %d before", v, v1)
		}

		for _, id := range []string{"b", "a"} {
			if err := s.PutException(ctx, store.Exception{ID: id, Digest: digestN(9), Repository: "docker.io/library/*", Reason: "ok " + id, Expires: at.Add(24 * time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}
		var ids []string
		if err := s.Exceptions(ctx, "", func(e store.Exception) bool { ids = append(ids, e.ID+"="+e.Repository); return true }); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ids) != "[a=docker.io/library/* b=docker.io/library/*]" {
			t.Fatalf("exceptions = %v", ids)
		}
		if e, err := s.DeleteException(ctx, "a"); err != nil || e.Reason != "ok a" {
			t.Fatalf("DeleteException = %+v, %v", e, err)
		}
		if _, err := s.DeleteException(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second DeleteException: %v, want ErrNotFound", err)
		}
	})
}

// RunConditionalDeletes checks DeleteQuarantineIf and DeleteExceptionIf:
// they remove only the very grant they are given, never one re-added or
// extended meanwhile, and of two callers only one removes it.
func RunConditionalDeletes(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Run("ConditionalDeletes", func(t *testing.T) {
		ctx := context.Background()
		s := newStore(t)
		at := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
		old := store.Quarantine{Digest: digestN(1), Reason: "old", CreatedAt: at, Expires: at.Add(time.Minute)}
		if err := s.PutQuarantine(ctx, old); err != nil {
			t.Fatal(err)
		}
		extended := old
		extended.Expires = at.Add(time.Hour)
		if err := s.PutQuarantine(ctx, extended); err != nil {
			t.Fatal(err)
		}
		v := func() uint64 {
			t.Helper()
			v, err := s.ControlsVersion(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		before := v()
		if done, err := s.DeleteQuarantineIf(ctx, old); err != nil || done {
			t.Fatalf("DeleteQuarantineIf(the grant replaced) = %v, %v; want false", done, err)
		}
		if after := v(); after != before {
			t.Fatalf("version moved %d → %d on a delete that did nothing", before, after)
		}
		n := 0
		if err := s.Quarantines(ctx, "", func(store.Quarantine) bool { n++; return true }); err != nil || n != 1 {
			t.Fatalf("quarantines after a refused delete: %d, %v", n, err)
		}
		if done, err := s.DeleteQuarantineIf(ctx, extended); err != nil || !done {
			t.Fatalf("DeleteQuarantineIf(the grant in force) = %v, %v; want true", done, err)
		}
		if after := v(); after <= before {
			t.Fatalf("version %d after a delete, %d before", after, before)
		}
		if done, err := s.DeleteQuarantineIf(ctx, extended); err != nil || done {
			t.Fatalf("second DeleteQuarantineIf = %v, %v; want false", done, err)
		}

		e := store.Exception{ID: "x", Digest: digestN(2), Reason: "ok", CreatedAt: at, Expires: at.Add(time.Minute)}
		if err := s.PutException(ctx, e); err != nil {
			t.Fatal(err)
		}
		readded := e
		readded.CreatedAt = at.Add(time.Second)
		if err := s.PutException(ctx, readded); err != nil {
			t.Fatal(err)
		}
		if done, err := s.DeleteExceptionIf(ctx, e); err != nil || done {
			t.Fatalf("DeleteExceptionIf(the grant replaced) = %v, %v; want false", done, err)
		}
		if done, err := s.DeleteExceptionIf(ctx, readded); err != nil || !done {
			t.Fatalf("DeleteExceptionIf(the grant in force) = %v, %v; want true", done, err)
		}
		if _, err := s.DeleteException(ctx, "x"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("exception still there after DeleteExceptionIf: %v", err)
		}
	})
}

// RunAudit checks the audit log: appended records come back oldest
// first, by kind, since a time and after a cursor.
func RunAudit(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Run("Audit", func(t *testing.T) {
		ctx := context.Background()
		s := newStore(t)
		base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
		var ids []string
		for i, kind := range []string{store.AuditQuarantine, store.AuditException, store.AuditQuarantine, store.AuditPolicyReload} {
			r := store.AuditRecord{At: base.Add(time.Duration(i) * 10 * time.Minute), Kind: kind, Who: "ci", What: digestN(i), Why: "because", RequestID: "req", Details: map[string]string{"n": fmt.Sprint(i)}}
			if err := s.AppendAudit(ctx, &r); err != nil {
				t.Fatal(err)
			}
			if r.ID == "" {
				t.Fatal("AppendAudit set no ID")
			}
			ids = append(ids, r.ID)
		}
		read := func(q store.AuditQuery, limit int) []string {
			t.Helper()
			var out []string
			err := s.Audit(ctx, q, func(r store.AuditRecord) bool {
				out = append(out, r.Details["n"]+":"+r.Kind)
				return len(out) < limit
			})
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		for _, tc := range []struct {
			name  string
			q     store.AuditQuery
			limit int
			want  string
		}{
			{"all", store.AuditQuery{}, 100, "[0:quarantine 1:exception 2:quarantine 3:policy_reload]"},
			{"page", store.AuditQuery{}, 2, "[0:quarantine 1:exception]"},
			{"after", store.AuditQuery{After: ids[1]}, 100, "[2:quarantine 3:policy_reload]"},
			{"kind", store.AuditQuery{Kind: store.AuditQuarantine}, 100, "[0:quarantine 2:quarantine]"},
			{"since", store.AuditQuery{Since: base.Add(15 * time.Minute)}, 100, "[2:quarantine 3:policy_reload]"},
			{"after and kind", store.AuditQuery{After: ids[0], Kind: store.AuditQuarantine}, 100, "[2:quarantine]"},
		} {
			if got := fmt.Sprint(read(tc.q, tc.limit)); got != tc.want {
				t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
			}
		}
		if err := s.Audit(ctx, store.AuditQuery{After: "not-a-cursor"}, func(store.AuditRecord) bool { return true }); err == nil {
			t.Error("a cursor the store did not make was accepted")
		}
	})
}
