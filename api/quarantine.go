package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/store"
)

// quarantineRequest is the body of POST /api/v1/quarantine.
type quarantineRequest struct {
	Digest  string `json:"digest"`
	Reason  string `json:"reason"`
	Expires string `json:"expires,omitempty"`
}

// QuarantineAnswer is a quarantine as the API shows it after a change.
type QuarantineAnswer struct {
	store.Quarantine
	// Seen says whether this mirror has judged the digest: a quarantine
	// ahead of its arrival is allowed (and the point).
	Seen bool `json:"seen"`
	// Replaced says it took the place of a quarantine of the same digest.
	Replaced bool `json:"replaced,omitempty"`
}

// QuarantineList is a page of GET /api/v1/quarantine.
type QuarantineList struct {
	Quarantines []store.Quarantine `json:"quarantines"`
	// Next is the cursor of the next page; empty on the last one.
	Next string `json:"next,omitempty"`
}

func (h *Handler) postQuarantine(w http.ResponseWriter, req request) {
	ctx := req.r.Context()
	var in quarantineRequest
	if status, err := decodeControl(w, req.r, &in); err != nil {
		writeBodyError(w, status, "quarantine: "+err.Error())
		return
	}
	now := time.Now()
	expires, err := parseExpiry(in.Expires, now)
	if err == nil {
		err = checkDigest(in.Digest)
	}
	if err == nil {
		err = checkReason(in.Reason)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "quarantine: "+err.Error())
		return
	}
	_, replaced, err := h.quarantineOf(ctx, in.Digest)
	if err != nil {
		h.internalError(w, req, "read quarantine of "+in.Digest, err)
		return
	}
	seen, err := h.seen(ctx, in.Digest)
	if err != nil {
		h.internalError(w, req, "read verdicts on "+in.Digest, err)
		return
	}
	q := store.Quarantine{Digest: in.Digest, Reason: in.Reason, Expires: expires, CreatedAt: now.UTC(), CreatedBy: req.who, RequestID: req.id}
	switch err := h.OperatorStore.PutQuarantine(ctx, q); {
	case errors.Is(err, store.ErrLimit):
		writeError(w, http.StatusConflict, fmt.Sprintf("quarantine: %d quarantines are in force, the most this server keeps: lift some first", store.MaxQuarantines))
		return
	case err != nil:
		h.internalError(w, req, "store quarantine of "+in.Digest, err)
		return
	}
	rec := store.AuditRecord{Kind: store.AuditQuarantine, What: q.Digest, Why: q.Reason}
	if !expires.IsZero() {
		rec.Details = map[string]string{"expires": expires.Format(time.RFC3339)}
	}
	status := http.StatusCreated
	if replaced {
		status = http.StatusOK
	}
	h.changed(w, req, rec, status, QuarantineAnswer{Quarantine: q, Seen: seen, Replaced: replaced})
}

func (h *Handler) deleteQuarantine(w http.ResponseWriter, req request, digest string) {
	if err := checkDigest(digest); err != nil {
		writeError(w, http.StatusBadRequest, "lift quarantine: "+err.Error())
		return
	}
	q, err := h.OperatorStore.DeleteQuarantine(req.r.Context(), digest)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "no quarantine of "+digest)
		return
	case err != nil:
		h.internalError(w, req, "lift quarantine of "+digest, err)
		return
	}
	h.changed(w, req, store.AuditRecord{Kind: store.AuditRelease, What: digest, Why: q.Reason}, http.StatusOK, q)
}

// quarantineOf finds the quarantine of digest, expired or not. The store
// lists from a key on; a prefix of digest sorts before it, and at most 15
// digests (same prefix, smaller last hex digit) lie between.
func (h *Handler) quarantineOf(ctx context.Context, digest string) (store.Quarantine, bool, error) {
	var found store.Quarantine
	ok := false
	err := h.OperatorStore.Quarantines(ctx, digest[:len(digest)-1], func(q store.Quarantine) bool {
		if q.Digest == digest {
			found, ok = q, true
		}
		return q.Digest < digest
	})
	return found, ok, err
}

// seen says whether this mirror has a scan of, or a verdict on, digest.
func (h *Handler) seen(ctx context.Context, digest string) (bool, error) {
	if _, err := h.Scans.Scan(ctx, digest); err == nil {
		return true, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	judged := false
	err := h.Scans.Decisions(ctx, digest, func(store.DecisionRecord) bool { judged = true; return false })
	return judged, err
}

func (h *Handler) listQuarantines(w http.ResponseWriter, req request) {
	cursor, limit, err := pageQuery(req.r)
	if err == nil && cursor != "" {
		if checkDigest(cursor) != nil {
			err = errBadNext
		}
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := time.Now()
	var list QuarantineList
	list.Quarantines, list.Next, err = controlsPage(req.r.Context(), h.OperatorStore.Quarantines, cursor, limit,
		func(q store.Quarantine) string { return q.Digest }, func(q store.Quarantine) bool { return q.Expires.IsZero() || q.Expires.After(now) })
	if err != nil {
		h.internalError(w, req, "list quarantines", err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}
