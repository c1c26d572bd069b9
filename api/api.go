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

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/vex"
)

// Resolver resolves references through the mirror, and lists what an
// index points to (read through the cache like a pull).
type Resolver interface {
	Resolve(ctx context.Context, ref string) (proxy.Resolved, error)
	IndexChildren(ctx context.Context, upstream, repo string, d digest.Digest) ([]v1.Descriptor, error)
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
	// Admission configures the Kubernetes admission webhook.
	Admission Admission

	// The operators' controls and their audit trail (operators.go); each
	// may be nil (OperatorStore nil: those endpoints answer 404).
	// OperatorStore keeps quarantines and exceptions; AuditLog is read by
	// GET /api/v1/audit; Audit records a change (Pipeline.Audit: stored,
	// then announced), and Controls.Refresh puts it in force on this
	// replica at once (the others poll); MaxExceptionDuration is
	// exceptions.max_duration (0: DefaultMaxExceptionDuration); UserOf
	// names the htpasswd user of a request, the audit's "who" without
	// tokens.
	OperatorStore        store.ControlStore
	AuditLog             store.AuditStore
	Audit                func(ctx context.Context, rec store.AuditRecord) (store.AuditRecord, error)
	MaxExceptionDuration time.Duration
	UserOf               func(ctx context.Context) string

	// What the overview (GET /api/v1/overview, the dashboard) reads
	// besides the store; each may be nil (then unknown: -1, 0, missing).
	// Counters holds the blocked pulls of every replica (BlockedPullsCounter).
	Counters store.Counters
	// CacheBytes is the size of the cached content; CacheCounts this
	// replica's cache hits and misses since start.
	CacheBytes  func() int64
	CacheCounts func() (hits, misses int64)
	// DBStatus reads the vulnerability database in force; older than
	// DBMaxAge (0: any age is fine) it is stale.
	DBStatus func(ctx context.Context) (DBStatus, error)
	DBMaxAge time.Duration
	// Controls lays the operators' quarantines and exceptions over the
	// verdicts shown; nil: none.
	Controls Controls
	overview overviewCache
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

// ServeHTTP routes (routes lists them; api/openapi.json documents them):
//
//	GET  /api/v1/scans/{digest}          the stored result of a manifest digest and the verdicts on it
//	                                     (?repository=UPSTREAM/REPO: that repository's verdict at the top level)
//	GET  /api/v1/scans/{digest}/sbom     its SBOM (?format=cyclonedx|spdx)
//	GET  /api/v1/scans/{digest}/report   its findings as SARIF (?format=sarif)
//	POST /api/v1/scans?image=REF         resolve REF through the mirror, queue its scan, answer its state
//	GET  /api/v1/images?ref=REF          the verdict on the image REF names (admission controllers, CI)
//	GET  /api/v1/images                  verdicts on cached images, filtered, a page at a time
//	GET  /api/v1/vulnerabilities/{id}    cached images a vulnerability affects
//	GET  /api/v1/overview                the dashboard's overview: verdict counts, blocked pulls, top vulnerabilities, cache, database
//	GET  /api/v1/events                  server-sent events: finished scans and verdict changes
//	GET  /api/v1/openapi.json            the OpenAPI document of all this
//	POST /api/v1/admission               Kubernetes validating admission webhook (AdmissionReview v1)
//	POST /api/v1/admission/mutate        the same, and pins each image to the digest judged (JSON patch)
//	POST|GET /api/v1/quarantine          quarantine a digest everywhere; list the quarantines
//	DELETE /api/v1/quarantine/{digest}   lift a quarantine
//	POST|GET /api/v1/exceptions          let a blocked digest through as warn until it expires; list them
//	DELETE /api/v1/exceptions/{id}       withdraw an exception
//	GET  /api/v1/audit                   the audit log: quarantines, exceptions, policy reloads, oldest first
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := request{id: proxy.NewRequestID(), r: r}
	w.Header().Set(proxy.RequestIDHeader, req.id)
	rt, params, ok := matchRoute(r.URL.Path)
	if !ok {
		writeError(w, http.StatusNotFound, "no such endpoint")
		return
	}
	if !rt.allows(r.Method) {
		w.Header().Set("Allow", strings.Join(rt.methods, ", "))
		writeError(w, http.StatusMethodNotAllowed, "use "+rt.usage)
		return
	}
	switch rt.name {
	case routeEvents:
		if h.Events == nil {
			writeError(w, http.StatusNotFound, "no event stream on this server")
			return
		}
		h.streamEvents(w, r)
	case routeOpenAPI:
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPIDocument)
	case routeScans:
		h.requestScan(w, req)
	case routeScan:
		h.getScan(w, req, params)
	case routeSBOM:
		h.getSBOM(w, req, params)
	case routeReport:
		h.getReport(w, req, params)
	case routeImages:
		if r.URL.Query().Has("ref") {
			h.imageByRef(w, req)
			return
		}
		h.listImages(w, req)
	case routeVulnerability:
		h.vulnerability(w, req, params)
	case routeOverview:
		h.getOverview(w, req)
	case routeAdmission:
		h.admissionReview(w, req, false)
	case routeAdmissionMutate:
		h.admissionReview(w, req, true)
	case routeQuarantines, routeQuarantine, routeExceptions, routeException, routeAudit:
		h.serveOperators(w, req, rt.name, params)
	}
}

// request is one API request and the id its responses and logs carry.
type request struct {
	id string
	r  *http.Request
	// who makes a change (operators.go): a token's name, a user, "loopback".
	who string
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
	view, err := h.ScanView(req.r.Context(), raw, req.r.URL.Query().Get("repository"))
	switch {
	case writeRequestError(w, err):
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, "no scan of "+raw+" yet: pull it through the mirror, or POST /api/v1/scans?image=REF")
	case err != nil:
		h.internalError(w, req, "read scan "+raw, err)
	default:
		writeJSON(w, http.StatusOK, view)
	}
}

// ScanView is a scan record as the API shows it: the facts about the
// digest, every repository's verdict on it, and, at the top level for
// clients that read one verdict, the verdict in the repository asked for,
// else in the one the image was first scanned for.
type ScanView struct {
	store.ScanRecord
	VerdictIn      string                 `json:"verdictIn,omitempty"` // upstream/repository of the top-level verdict
	Verdict        string                 `json:"verdict,omitempty"`
	Rule           string                 `json:"rule,omitempty"`
	Decision       *policy.Decision       `json:"decision,omitempty"`
	Signature      *policy.SignatureFacts `json:"signature,omitempty"`
	PolicyVersion  string                 `json:"policyVersion,omitempty"`
	Tag            string                 `json:"tag,omitempty"`
	Tags           []string               `json:"tags,omitempty"` // tags it was pulled by there, newest first
	FirstAllowedAt time.Time              `json:"firstAllowedAt,omitzero"`
	History        []store.VerdictChange  `json:"history,omitempty"`
	Decisions      []store.DecisionRecord `json:"decisions"`
	// Suppressed are the findings VEX statements took out of the verdict
	// in VerdictIn; they are not in Findings.
	Suppressed []vex.Suppressed `json:"suppressed,omitempty"`
	// DecisionsTruncated says more repositories hold verdicts than listed.
	DecisionsTruncated bool `json:"decisionsTruncated,omitempty"`
	// PolicyVerdict is the policy's own verdict in VerdictIn when an
	// operator's quarantine or exception changed it (Verdict and Decision
	// are then the effective ones); Decisions stay the policy's.
	PolicyVerdict string            `json:"policyVerdict,omitempty"`
	Quarantine    *store.Quarantine `json:"quarantine,omitempty"`
	Exception     *store.Exception  `json:"exception,omitempty"`
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
			v.PolicyVersion, v.Tag, v.Tags, v.FirstAllowedAt, v.History = d.PolicyVersion, d.Tag, d.Tags, d.FirstAllowedAt, d.History
		}
	}
	if v.Decision != nil && len(v.Decision.Suppressed) > 0 {
		v.Suppressed = v.Decision.Suppressed
		v.Findings = withoutSuppressed(v.Findings, v.Suppressed)
	}
	h.overlayScanView(ctx, &v, want)
	return v, nil
}

// withoutSuppressed is findings less those VEX suppressed.
func withoutSuppressed(findings []vulndb.Finding, suppressed []vex.Suppressed) []vulndb.Finding {
	gone := make(map[string]bool, len(suppressed))
	key := func(f vulndb.Finding) string {
		return f.Kind + "\x00" + f.ID + "\x00" + f.Ecosystem + "\x00" + f.Package + "\x00" + f.InstalledVersion + "\x00" + f.Path
	}
	for _, s := range suppressed {
		gone[key(s.Finding)] = true
	}
	out := make([]vulndb.Finding, 0, len(findings))
	for _, f := range findings {
		if !gone[key(f)] {
			out = append(out, f)
		}
	}
	return out
}

func (h *Handler) requestScan(w http.ResponseWriter, req request) {
	ctx := req.r.Context()
	ref := req.r.URL.Query().Get("image")
	if ref == "" {
		writeError(w, http.StatusBadRequest, "missing ?image=REF, e.g. ?image=ghcr.io/org/app:1.0")
		return
	}
	res, err := h.Resolver.Resolve(ctx, ref)
	if err != nil {
		h.resolveError(w, req, ref, err)
		return
	}
	if err := h.Queue.Request(ctx, res.Upstream, res.Repository, res.Digest, res.MediaType); err != nil {
		h.queueError(w, req, res.Digest.String(), err)
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

// resolveError answers a failed resolution: a bad reference is the
// client's, a refused one forbidden, an internal failure logged; the rest
// come from the upstream (an image it does not have is 404, not 502).
func (h *Handler) resolveError(w http.ResponseWriter, req request, ref string, err error) {
	if re := resolveRequestError(ref, err); re != nil {
		writeCodedError(w, re.Status, re.Code, re.Message)
		return
	}
	h.internalError(w, req, "resolve "+quote(ref), err)
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }

func writeCompactJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// apiError is every error body: a stable code for programs and a message
// for people. "error" repeats the message for clients of the first API
// version, which read only that.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Error   string `json:"error"`
}

// errorCodes names the code of each status the API answers with.
var errorCodes = map[int]string{
	http.StatusBadRequest:          "BAD_REQUEST",
	http.StatusUnauthorized:        "UNAUTHORIZED",
	http.StatusForbidden:           "FORBIDDEN",
	http.StatusNotFound:            "NOT_FOUND",
	http.StatusMethodNotAllowed:    "METHOD_NOT_ALLOWED",
	http.StatusConflict:            "CONFLICT",
	http.StatusInternalServerError: "INTERNAL",
	http.StatusBadGateway:          "UPSTREAM",
	http.StatusServiceUnavailable:  "UNAVAILABLE",
	http.StatusGatewayTimeout:      "TIMEOUT",
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeCodedError(w, status, cmp.Or(errorCodes[status], "ERROR"), msg)
}

func writeCodedError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Code: code, Message: msg, Error: msg})
}
