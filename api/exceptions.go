package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/store"
)

// exceptionRequest is the body of POST /api/v1/exceptions.
type exceptionRequest struct {
	Digest     string `json:"digest"`
	Repository string `json:"repository,omitempty"`
	Reason     string `json:"reason"`
	Expires    string `json:"expires"`
}

// ExceptionList is a page of GET /api/v1/exceptions.
type ExceptionList struct {
	Exceptions []store.Exception `json:"exceptions"`
	Next       string            `json:"next,omitempty"`
}

// exceptionID is what POST makes: 16 lowercase hex digits.
var exceptionID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// maxUnwaivableShown bounds the blocking reasons an error names.
const maxUnwaivableShown = 5

func newExceptionID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

func (h *Handler) maxExceptionDuration() time.Duration {
	if h.MaxExceptionDuration > 0 {
		return h.MaxExceptionDuration
	}
	return DefaultMaxExceptionDuration
}

// checkException checks an exception's fields, before any store read.
func (h *Handler) checkException(in exceptionRequest, now time.Time) (time.Time, error) {
	if err := checkDigest(in.Digest); err != nil {
		return time.Time{}, err
	}
	if err := checkReason(in.Reason); err != nil {
		return time.Time{}, err
	}
	if in.Repository != "" {
		if err := policy.CheckRepositoryGlob(in.Repository); err != nil {
			return time.Time{}, fmt.Errorf("repository: %w", err)
		}
	}
	if in.Expires == "" {
		return time.Time{}, fmt.Errorf("expires is required: an exception ends, at most %s ahead (exceptions.max_duration)", formatDays(h.maxExceptionDuration()))
	}
	expires, err := parseExpiry(in.Expires, now)
	if err != nil {
		return time.Time{}, err
	}
	if max := h.maxExceptionDuration(); expires.After(now.Add(max)) {
		return time.Time{}, fmt.Errorf("expires %s is more than %s ahead (exceptions.max_duration)", in.Expires, formatDays(max))
	}
	return expires, nil
}

// formatDays writes a duration of whole days as "90d".
func formatDays(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

func (h *Handler) postException(w http.ResponseWriter, req request) {
	ctx := req.r.Context()
	var in exceptionRequest
	if status, err := decodeControl(w, req.r, &in); err != nil {
		writeBodyError(w, status, "exception: "+err.Error())
		return
	}
	now := time.Now()
	expires, err := h.checkException(in, now)
	if err != nil {
		writeError(w, http.StatusBadRequest, "exception: "+err.Error())
		return
	}
	q, quarantined, err := h.quarantineOf(ctx, in.Digest)
	if err != nil {
		h.internalError(w, req, "read quarantine of "+in.Digest, err)
		return
	}
	if quarantined && (q.Expires.IsZero() || q.Expires.After(now)) {
		writeError(w, http.StatusConflict, fmt.Sprintf("exception: %s is quarantined (%s): not waivable, an exception never overrides a quarantine; lift it first (DELETE /api/v1/quarantine/%s)",
			in.Digest, q.Reason, in.Digest))
		return
	}
	status, msg, err := h.waivable(ctx, in.Digest, in.Repository)
	if err != nil {
		h.internalError(w, req, "read verdicts on "+in.Digest, err)
		return
	}
	if status != 0 {
		writeError(w, status, "exception: "+msg)
		return
	}
	id, err := newExceptionID()
	if err != nil {
		h.internalError(w, req, "make an exception id", err)
		return
	}
	e := store.Exception{ID: id, Digest: in.Digest, Repository: in.Repository, Reason: in.Reason, Expires: expires,
		CreatedAt: now.UTC(), CreatedBy: req.who, RequestID: req.id}
	switch err := h.OperatorStore.PutException(ctx, e); {
	case errors.Is(err, store.ErrLimit):
		writeError(w, http.StatusConflict, fmt.Sprintf("exception: %d exceptions are in force, the most this server keeps: withdraw some first", store.MaxExceptions))
		return
	case err != nil:
		h.internalError(w, req, "store exception for "+in.Digest, err)
		return
	}
	h.changed(w, req, exceptionRecord(store.AuditException, e), http.StatusCreated, e)
}

// exceptionRecord is the audit record of an exception granted or withdrawn.
func exceptionRecord(kind string, e store.Exception) store.AuditRecord {
	details := map[string]string{"exception": e.ID, "expires": e.Expires.UTC().Format(time.RFC3339)}
	if e.Repository != "" {
		details["repository"] = e.Repository
	}
	return store.AuditRecord{Kind: kind, What: e.Digest, Why: e.Reason, Details: details}
}

// waivable checks that the policy judged digest in a repository the glob
// matches, and that none of those verdicts blocks for a reason no
// exception waives. A status 0 means yes.
func (h *Handler) waivable(ctx context.Context, digest, glob string) (int, string, error) {
	matched, examined := 0, 0
	var unwaivable []string
	err := h.Scans.Decisions(ctx, digest, func(d store.DecisionRecord) bool {
		if examined++; examined > maxGroup {
			return false
		}
		where := d.Upstream + "/" + d.Repository
		if glob != "" && !policy.MatchRepositoryGlob(glob, where) {
			return true
		}
		matched++
		if d.Decision == nil {
			return true
		}
		for _, r := range d.Decision.Unwaivable() {
			if len(unwaivable) < maxUnwaivableShown {
				unwaivable = append(unwaivable, fmt.Sprintf("%s in %s: %s", r.Code, where, r.Message))
			}
		}
		return true
	})
	switch {
	case err != nil:
		return 0, "", err
	case matched == 0 && glob != "":
		return http.StatusNotFound, fmt.Sprintf("no verdict on %s in a repository matching %s: an exception waives a verdict the policy made; pull it first", digest, quote(glob)), nil
	case matched == 0:
		return http.StatusNotFound, fmt.Sprintf("no verdict on %s: an exception waives a verdict the policy made; pull it first", digest), nil
	case len(unwaivable) > 0:
		return http.StatusConflict, fmt.Sprintf("%s is blocked for reasons no exception waives (%s): malware, a signature that fails to verify (SIGNATURE_INVALID), source/tag curation and quarantine are never waived",
			digest, strings.Join(unwaivable, "; ")), nil
	}
	return 0, "", nil
}

func (h *Handler) deleteException(w http.ResponseWriter, req request, id string) {
	if !exceptionID.MatchString(id) {
		writeError(w, http.StatusBadRequest, "withdraw exception: id "+quote(cutForMessage(id))+": want the 16 hex digits POST /api/v1/exceptions answered")
		return
	}
	e, err := h.OperatorStore.DeleteException(req.r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "no exception "+id)
		return
	case err != nil:
		h.internalError(w, req, "withdraw exception "+id, err)
		return
	}
	h.changed(w, req, exceptionRecord(store.AuditExceptionRemoved, e), http.StatusOK, e)
}

func (h *Handler) listExceptions(w http.ResponseWriter, req request) {
	cursor, limit, err := pageQuery(req.r)
	if err == nil && cursor != "" && !exceptionID.MatchString(cursor) {
		err = errBadNext
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	now := time.Now()
	var list ExceptionList
	list.Exceptions, list.Next, err = controlsPage(req.r.Context(), h.OperatorStore.Exceptions, cursor, limit,
		func(e store.Exception) string { return e.ID }, func(e store.Exception) bool { return e.Expires.After(now) })
	if err != nil {
		h.internalError(w, req, "list exceptions", err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}
