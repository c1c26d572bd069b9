package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/portcullis/portcullis/store"
)

// Bounds of the operators' requests.
const (
	// maxControlBody bounds a POST body: a reason is at most
	// maxReasonLen, so anything near this is not a control.
	maxControlBody = 64 << 10
	// maxReasonLen bounds a quarantine's or exception's reason.
	maxReasonLen = 4096
	// maxControlsExamined bounds the entries one list page walks past its
	// cursor (expired ones are skipped, not shown).
	maxControlsExamined = 10 * maxLimit
	// DefaultMaxExceptionDuration is exceptions.max_duration's default.
	DefaultMaxExceptionDuration = 90 * 24 * time.Hour
)

var manifestDigest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

var errBadNext = errors.New("invalid cursor: pass back next of the previous page unchanged")

// tokenNameKey carries the name of the API token of a request (Tokens.Wrap).
type tokenNameKey struct{}

func withTokenName(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, tokenNameKey{}, name)
}

// tokenName is the name of the request's API token, if tokens guard the API.
func tokenName(ctx context.Context) (string, bool) {
	name, ok := ctx.Value(tokenNameKey{}).(string)
	return name, ok
}

// serveOperators answers the quarantine, exception and audit endpoints.
func (h *Handler) serveOperators(w http.ResponseWriter, req request, name routeName, param string) {
	if h.OperatorStore == nil || h.AuditLog == nil {
		writeError(w, http.StatusNotFound, "quarantines, exceptions and the audit log are not kept by this server")
		return
	}
	if req.r.Method != http.MethodGet && req.r.Method != http.MethodHead {
		who, ok := h.operator(req.r)
		if !ok {
			writeError(w, http.StatusForbidden, "changing quarantines and exceptions needs an admin token (api.tokens_file) or a client on loopback; "+
				req.r.RemoteAddr+" is not on loopback and this server has no api.tokens_file")
			return
		}
		req.who = who
	}
	switch {
	case name == routeQuarantines && req.r.Method == http.MethodPost:
		h.postQuarantine(w, req)
	case name == routeQuarantines:
		h.listQuarantines(w, req)
	case name == routeQuarantine:
		h.deleteQuarantine(w, req, param)
	case name == routeExceptions && req.r.Method == http.MethodPost:
		h.postException(w, req)
	case name == routeExceptions:
		h.listExceptions(w, req)
	case name == routeException:
		h.deleteException(w, req, param)
	case name == routeAudit:
		h.listAudit(w, req)
	}
}

// operator names who makes a change, for the audit log: the API token's
// name when tokens guard the API (Tokens.Wrap checked its admin scope);
// without tokens only loopback clients may change anything, named by
// their htpasswd user when there is one, else "loopback".
func (h *Handler) operator(r *http.Request) (string, bool) {
	if name, ok := tokenName(r.Context()); ok {
		return name, true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return "", false
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return "", false
	}
	if h.UserOf != nil {
		if user := h.UserOf(r.Context()); user != "" {
			return user, true
		}
	}
	return "loopback", true
}

// decodeControl reads a POST body into v: one JSON object, no unknown
// fields, at most maxControlBody bytes.
func decodeControl(w http.ResponseWriter, r *http.Request, v any) (int, error) {
	body := http.MaxBytesReader(w, r.Body, maxControlBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, extra := dec.Token(); !errors.Is(extra, io.EOF) {
			err = errors.New("one JSON object only")
		}
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge, fmt.Errorf("request body over %d bytes: a reason is at most %d bytes, on one line", maxControlBody, maxReasonLen)
	case errors.Is(err, io.EOF):
		return http.StatusBadRequest, errors.New("empty body: want a JSON object")
	case err != nil:
		return http.StatusBadRequest, fmt.Errorf("invalid JSON body: %w", err)
	}
	return 0, nil
}

// writeBodyError answers a body decodeControl refused.
func writeBodyError(w http.ResponseWriter, status int, msg string) {
	if status == http.StatusRequestEntityTooLarge {
		writeCodedError(w, status, "TOO_LARGE", msg)
		return
	}
	writeError(w, status, msg)
}

// checkDigest wants a manifest digest as the API takes it.
func checkDigest(d string) error {
	if !manifestDigest.MatchString(d) {
		return fmt.Errorf("digest %s: want sha256: and 64 lowercase hex digits", quote(cutForMessage(d)))
	}
	return nil
}

// checkReason wants a reason people can read in a log line and a chat
// message: present, one line, printable, bounded.
func checkReason(reason string) error {
	switch {
	case strings.TrimSpace(reason) == "":
		return errors.New("reason is required: say why, for the audit log")
	case len(reason) > maxReasonLen:
		return fmt.Errorf("reason of %d bytes: at most %d", len(reason), maxReasonLen)
	case !utf8.ValidString(reason):
		return errors.New("reason is not valid UTF-8")
	case strings.IndexFunc(reason, func(r rune) bool { return unicode.IsControl(r) }) >= 0:
		return errors.New("reason must be one line of text (no newlines or control characters)")
	}
	return nil
}

// parseExpiry reads an RFC 3339 time in the future ("" is zero).
func parseExpiry(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("expires %s: want an RFC 3339 time like 2030-01-02T15:04:05Z", quote(cutForMessage(s)))
	}
	if !t.After(now) {
		return time.Time{}, fmt.Errorf("expires %s is in the past", s)
	}
	return t.UTC(), nil
}

func cutForMessage(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// pageQuery reads ?cursor= and ?limit= of a control or audit listing.
func pageQuery(r *http.Request) (cursor string, limit int, err error) {
	q := r.URL.Query()
	for key, vals := range q {
		if len(vals) > 1 {
			return "", 0, errors.New("?" + key + "= given more than once")
		}
	}
	limit = defaultLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return "", 0, invalidLimit(s)
		}
		limit = n
	}
	cursor = q.Get("cursor")
	if len(cursor) > maxCursorLen {
		return "", 0, errBadNext
	}
	return cursor, limit, nil
}

// changed finishes a change that succeeded: its audit record, then this
// replica's view of the controls. A record that fails leaves the change
// in force and answers 500 saying so: the operator must know the audit
// log misses it.
func (h *Handler) changed(w http.ResponseWriter, req request, rec store.AuditRecord, status int, answer any) {
	ctx := req.r.Context()
	if h.Controls != nil {
		if err := h.Controls.Refresh(ctx); err != nil {
			// The others poll the store; this replica will too.
			h.logger().WarnContext(ctx, "controls changed but not yet in force here", "request_id", req.id, "err", err)
		}
	}
	if h.Audit == nil {
		writeJSON(w, status, answer)
		return
	}
	rec.Who, rec.RequestID = req.who, req.id
	if _, err := h.Audit(ctx, rec); err != nil {
		h.logger().ErrorContext(ctx, "audit record failed", "request_id", req.id, "kind", rec.Kind, "what", rec.What, "err", err)
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("the %s of %s is done and in force, but its audit record failed (request id %s): see the server log", rec.Kind, rec.What, req.id))
		return
	}
	writeJSON(w, status, answer)
}

// controlsPage reads one page of quarantines or exceptions after cursor
// through each: at most limit in force, walking past no more than
// maxControlsExamined (expired ones wait for the sweeper and are not
// listed); next is where the following page starts, "" at the end.
func controlsPage[T any](ctx context.Context, each func(context.Context, string, func(T) bool) error, cursor string, limit int,
	key func(T) string, inForce func(T) bool) (page []T, next string, err error) {
	page = []T{}
	examined, last := 0, ""
	err = each(ctx, cursor, func(x T) bool {
		if len(page) == limit || examined == maxControlsExamined {
			// More remain: go on after the last one looked at.
			next = last
			return false
		}
		examined++
		last = key(x)
		if inForce(x) {
			page = append(page, x)
		}
		return true
	})
	return page, next, err
}
