package api

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/store"
)

// AuditList is a page of GET /api/v1/audit, oldest first.
type AuditList struct {
	Records []store.AuditRecord `json:"records"`
	// Next is the cursor of the next page; empty on the last one.
	Next string `json:"next,omitempty"`
}

func (h *Handler) listAudit(w http.ResponseWriter, req request) {
	cursor, limit, err := pageQuery(req.r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	q := req.r.URL.Query()
	query := store.AuditQuery{After: cursor, Kind: q.Get("kind")}
	if query.Kind != "" && !slices.Contains(store.AuditKinds(), query.Kind) {
		writeError(w, http.StatusBadRequest, "unknown ?kind="+quote(cutForMessage(query.Kind))+": want one of "+strings.Join(store.AuditKinds(), ", "))
		return
	}
	if s := q.Get("since"); s != "" {
		since, err := time.Parse(time.RFC3339, s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid ?since="+quote(cutForMessage(s))+": want an RFC 3339 time like 2030-01-02T15:04:05Z")
			return
		}
		query.Since = since
	}
	list := AuditList{Records: []store.AuditRecord{}}
	err = h.AuditLog.Audit(req.r.Context(), query, func(r store.AuditRecord) bool {
		if len(list.Records) == limit {
			list.Next = list.Records[limit-1].ID
			return false
		}
		list.Records = append(list.Records, r)
		return true
	})
	switch {
	case err != nil && cursor != "":
		// The only input the store reads is the cursor: each store
		// refuses an ID it did not make. The cause goes to the log.
		h.logger().WarnContext(req.r.Context(), "audit cursor refused", "request_id", req.id, "err", err)
		writeError(w, http.StatusBadRequest, errBadNext.Error())
	case err != nil:
		h.internalError(w, req, "read audit log", err)
	default:
		writeJSON(w, http.StatusOK, list)
	}
}
