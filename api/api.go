// Package api is the status API admission controllers, CI gates, dashboards
// and people query: what Portcullis knows about an image digest, from the
// store, without touching any upstream unless asked to resolve a tag.
package api

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/store"
)

// Resolver resolves references through the mirror.
type Resolver interface {
	Resolve(ctx context.Context, ref string) (proxy.Resolved, error)
}

// Queue queues scans; for an index, of all its platforms.
type Queue interface {
	Request(ctx context.Context, upstream, repo string, d digest.Digest, mediaType string) error
}

// Events streams what the pipeline announces.
type Events interface {
	Subscribe() (<-chan pipeline.Event, func())
}

// Scans is what the API reads: scan results and the verdicts on them.
type Scans interface {
	store.ScanStore
	store.DecisionStore
}

// Handler serves /api/v1/.
type Handler struct {
	Scans    Scans
	Resolver Resolver
	Queue    Queue
	Events   Events
	// Closing keeps event streams from holding up a graceful shutdown.
	Closing <-chan struct{}
	// DBVersion is the vulnerability database version in force; results
	// matched against another one are served marked stale. May be nil.
	DBVersion func() string
	// Logger receives the causes of internal errors, which clients only
	// see as a request id. Nil: slog.Default().
	Logger *slog.Logger
}

// markStale flags a result whose findings come from another database
// than the one in force (until the re-match reaches it).
func (h *Handler) markStale(rec *store.ScanRecord) {
	if h.DBVersion == nil || rec.State != store.ScanDone {
		return
	}
	if v := h.DBVersion(); v != "" && rec.DBVersion != v {
		rec.Stale = true
	}
}

// ServeHTTP routes:
//
//	GET  /api/v1/scans/{digest}          the stored result of a manifest digest and the verdicts on it
//	                                     (?repository=UPSTREAM/REPO: that repository's verdict at the top level)
//	POST /api/v1/scans?image=REF         resolve REF through the mirror, queue its scan, answer its state
//	GET  /api/v1/events                  server-sent events: finished scans and verdict changes
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := request{id: proxy.NewRequestID(), r: r}
	w.Header().Set(proxy.RequestIDHeader, req.id)
	if r.URL.Path == "/api/v1/events" && r.Method == http.MethodGet && h.Events != nil {
		h.streamEvents(w, r)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/scans")
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, "no such endpoint")
	case rest == "" && r.Method == http.MethodPost:
		h.requestScan(w, req)
	case strings.HasPrefix(rest, "/") && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		h.getScan(w, req, strings.TrimPrefix(rest, "/"))
	default:
		writeError(w, http.StatusMethodNotAllowed, "use GET /api/v1/scans/{digest} or POST /api/v1/scans?image=REF")
	}
}

// request is one API request and the id its responses and logs carry.
type request struct {
	id string
	r  *http.Request
}

// internalError answers 500 with the request id only and logs what failed
// with the same id: store and cache errors name files and keys.
func (h *Handler) internalError(w http.ResponseWriter, req request, what string, err error) {
	log := h.Logger
	if log == nil {
		log = slog.Default()
	}
	log.LogAttrs(req.r.Context(), slog.LevelError, "api request failed",
		slog.String("request_id", req.id), slog.String("method", req.r.Method), slog.String("path", req.r.URL.Path),
		slog.String("error", what), slog.String("cause", err.Error()))
	writeError(w, http.StatusInternalServerError, proxy.InternalMessage(req.id))
}

func (h *Handler) getScan(w http.ResponseWriter, req request, raw string) {
	d, err := digest.Parse(raw)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid digest "+quote(raw)+": "+err.Error())
		return
	}
	repository := req.r.URL.Query().Get("repository")
	if repository != "" && !strings.Contains(repository, "/") {
		writeError(w, http.StatusBadRequest, "invalid repository "+quote(repository)+": want UPSTREAM/REPOSITORY, e.g. docker.io/library/alpine")
		return
	}
	rec, err := h.Scans.Scan(req.r.Context(), d.String())
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "no scan of "+d.String()+" yet: pull it through the mirror, or POST /api/v1/scans?image=REF")
	case err != nil:
		h.internalError(w, req, "read scan "+d.String(), err)
	default:
		view, err := h.view(req.r.Context(), rec, repository)
		if err != nil {
			h.internalError(w, req, "read verdicts on "+d.String(), err)
			return
		}
		writeJSON(w, http.StatusOK, view)
	}
}

// scanView is a scan record as the API shows it: the facts about the
// digest, every repository's verdict on it, and, at the top level for
// clients that read one verdict, the verdict in the repository asked for,
// else in the one the image was first scanned for.
type scanView struct {
	store.ScanRecord
	VerdictIn      string                 `json:"verdictIn,omitempty"` // upstream/repository of the top-level verdict
	Verdict        string                 `json:"verdict,omitempty"`
	Rule           string                 `json:"rule,omitempty"`
	Decision       *policy.Decision       `json:"decision,omitempty"`
	Signature      *policy.SignatureFacts `json:"signature,omitempty"`
	PolicyVersion  string                 `json:"policyVersion,omitempty"`
	Tag            string                 `json:"tag,omitempty"`
	FirstAllowedAt time.Time              `json:"firstAllowedAt,omitzero"`
	History        []store.VerdictChange  `json:"history,omitempty"`
	Decisions      []store.DecisionRecord `json:"decisions"`
	// DecisionsTruncated says more repositories hold verdicts than listed.
	DecisionsTruncated bool `json:"decisionsTruncated,omitempty"`
}

// maxDecisionsShown bounds one answer's list of per-repository verdicts.
const maxDecisionsShown = 1000

func (h *Handler) view(ctx context.Context, rec store.ScanRecord, repository string) (scanView, error) {
	h.markStale(&rec)
	v := scanView{ScanRecord: rec, Decisions: []store.DecisionRecord{}}
	want := cmp.Or(repository, rec.Upstream+"/"+rec.Repository)
	err := h.Scans.Decisions(ctx, rec.Digest, func(d store.DecisionRecord) bool {
		if len(v.Decisions) == maxDecisionsShown {
			v.DecisionsTruncated = true
			return false
		}
		v.Decisions = append(v.Decisions, d)
		return true
	})
	if err != nil {
		return scanView{}, err
	}
	for _, d := range v.Decisions {
		if d.Upstream+"/"+d.Repository == want {
			v.VerdictIn, v.Verdict, v.Rule, v.Decision, v.Signature = want, d.Verdict, d.Rule, d.Decision, d.Signature
			v.PolicyVersion, v.Tag, v.FirstAllowedAt, v.History = d.PolicyVersion, d.Tag, d.FirstAllowedAt, d.History
		}
	}
	return v, nil
}

func (h *Handler) requestScan(w http.ResponseWriter, req request) {
	ctx := req.r.Context()
	ref := req.r.URL.Query().Get("image")
	if ref == "" {
		writeError(w, http.StatusBadRequest, "missing ?image=REF, e.g. ?image=ghcr.io/org/app:1.0")
		return
	}
	res, err := h.Resolver.Resolve(ctx, ref)
	switch {
	case errors.Is(err, proxy.ErrInternal):
		h.internalError(w, req, "resolve "+quote(ref), err)
		return
	case err != nil:
		status := http.StatusBadGateway
		switch {
		case errors.Is(err, proxy.ErrBadReference):
			status = http.StatusBadRequest
		case errors.Is(err, proxy.ErrAccessDenied): // the pull rules apply to resolving too
			status = http.StatusForbidden
		}
		writeError(w, status, "resolve "+quote(ref)+": "+err.Error())
		return
	}
	if err := h.Queue.Request(ctx, res.Upstream, res.Repository, res.Digest, res.MediaType); err != nil {
		switch {
		case errors.Is(err, pipeline.ErrIndexTooLarge):
			writeError(w, http.StatusBadRequest, "queue scan: "+err.Error())
		case errors.Is(err, pipeline.ErrQueueFull):
			writeError(w, http.StatusServiceUnavailable, "queue scan: "+err.Error())
		default:
			h.internalError(w, req, "queue scan of "+res.Digest.String(), err)
		}
		return
	}
	rec, err := h.Scans.Scan(ctx, res.Digest.String())
	if errors.Is(err, store.ErrNotFound) {
		// An index: its children were queued, the index itself has no scan.
		writeJSON(w, http.StatusAccepted, map[string]string{"digest": res.Digest.String(), "mediaType": res.MediaType, "state": "queued-children"})
		return
	}
	if err != nil {
		h.internalError(w, req, "read scan "+res.Digest.String(), err)
		return
	}
	view, err := h.view(ctx, rec, res.Upstream+"/"+res.Repository)
	if err != nil {
		h.internalError(w, req, "read verdicts on "+res.Digest.String(), err)
		return
	}
	status := http.StatusOK
	if rec.State == store.ScanPending {
		status = http.StatusAccepted
	}
	writeJSON(w, status, view)
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
