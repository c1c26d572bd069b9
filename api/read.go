package api

// The read side of the API as Go methods: the JSON endpoints and the web
// pages (package ui) call these, so both show literally the same answers.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/vex"
)

// RequestError is a request the read methods refuse as the caller's (or
// the upstream's) doing, never a failure of this server: Status is the
// HTTP status the API answers it with, Code its stable error code, and
// Message is safe to show (it names no file or store key).
type RequestError struct {
	Status  int
	Code    string
	Message string
}

func (e *RequestError) Error() string { return e.Message }

func badRequest(code string, err error) *RequestError {
	return &RequestError{Status: http.StatusBadRequest, Code: code, Message: err.Error()}
}

// ListQuery is what the images list asks, the values as a client gives
// them: ListImages checks each (an unknown value is an error, never a
// filter that silently matches nothing).
type ListQuery struct {
	Verdict       string // allow, warn, block or pending
	Upstream      string
	Repository    string // a glob on the repository path (path.Match), e.g. library/*
	Vulnerability string // an OSV id, alias or upstream id
	MinSeverity   string // CRITICAL, HIGH, MEDIUM, LOW or UNKNOWN
	// Signed: "yes" lists verdicts made on a verified signature, "no" the
	// others; "" both.
	Signed string
	// Sort: "digest" (or ""): by digest, then upstream/repository;
	// "recent": the newest verdict first (by the time it was made).
	Sort   string
	Limit  int    // 0: the default page size
	Cursor string // NextCursor of the previous page (same Sort); "": the first page
}

// ListImages answers the images list: verdicts sorted by digest, then
// upstream/repository, or newest first (q.Sort), a page at a time (GET
// /api/v1/images).
func (h *Handler) ListImages(ctx context.Context, q ListQuery) (ImageList, error) {
	lq, err := q.compile()
	if err != nil {
		code := "BAD_REQUEST"
		if errors.Is(err, errBadCursor) {
			code = "BAD_CURSOR"
		}
		return ImageList{}, badRequest(code, err)
	}
	list, err := h.list(ctx, lq)
	if err != nil {
		return ImageList{}, fmt.Errorf("list verdicts: %w", err)
	}
	return list, nil
}

// ScanView reads the stored result of a manifest digest and the verdicts
// on it, the one in repository (UPSTREAM/REPO; "": the repository it was
// first scanned for) at the top level (GET /api/v1/scans/{digest}). An
// unknown digest is store.ErrNotFound.
func (h *Handler) ScanView(ctx context.Context, raw, repository string) (ScanView, error) {
	d, err := digest.Parse(raw)
	if err != nil {
		return ScanView{}, badRequest("BAD_DIGEST", errors.New("invalid digest "+quote(raw)+": "+err.Error()))
	}
	if repository != "" && !strings.Contains(repository, "/") {
		return ScanView{}, badRequest("BAD_REQUEST", errors.New("invalid repository "+quote(repository)+": want UPSTREAM/REPOSITORY, e.g. docker.io/library/alpine"))
	}
	rec, err := h.Scans.Scan(ctx, d.String())
	if err != nil {
		return ScanView{}, fmt.Errorf("read scan %s: %w", d, err)
	}
	view, err := h.view(ctx, rec, repository)
	if err != nil {
		return ScanView{}, fmt.Errorf("read verdicts on %s: %w", d, err)
	}
	return view, nil
}

// Vulnerability lists the cached images with a finding named id (its OSV
// id, an alias or the upstream id behind a distribution's id), and the
// repositories each was pulled from (GET /api/v1/vulnerabilities/{id}).
func (h *Handler) Vulnerability(ctx context.Context, id string) (VulnerabilityAnswer, error) {
	if !validVulnID(id) {
		return VulnerabilityAnswer{}, badRequest("BAD_REQUEST", errors.New("invalid vulnerability id "+quote(id)+": want an id like CVE-2024-1234 or GHSA-xxxx-xxxx-xxxx"))
	}
	return h.vulnerabilityAnswer(ctx, id)
}

// ImageByRef reads the stored verdict on the image ref names, for
// linux/amd64 when it names an index: a tag within its TTL resolves from
// the tag cache and the manifest from the content cache, so no upstream
// is contacted then (GET /api/v1/images?ref=). A reference that does not
// parse or resolve is a *RequestError.
func (h *Handler) ImageByRef(ctx context.Context, ref string) (ImageStatus, error) {
	iq, err := parseImageQuery(url.Values{"ref": {ref}})
	if err != nil {
		return ImageStatus{}, badRequest("BAD_REQUEST", err)
	}
	st, _, err := h.statusByRef(ctx, iq)
	var rf *resolveFailure
	switch {
	case errors.Is(err, errNoPlatform):
		return ImageStatus{}, &RequestError{Status: http.StatusNotFound, Code: "UNKNOWN_PLATFORM", Message: err.Error()}
	case errors.As(err, &rf):
		if re := resolveRequestError(ref, rf.err); re != nil {
			return ImageStatus{}, re
		}
		return ImageStatus{}, fmt.Errorf("resolve %s: %w", quote(ref), rf.err)
	case err != nil:
		return ImageStatus{}, fmt.Errorf("read verdict on %s: %w", st.Digest, err)
	}
	return st, nil
}

// resolveFailure marks an error of resolving a reference, as opposed to
// one of reading the store.
type resolveFailure struct{ err error }

func (e *resolveFailure) Error() string { return e.err.Error() }
func (e *resolveFailure) Unwrap() error { return e.err }

// resolveRequestError classifies a failed resolution like resolveError
// does; nil: an internal failure (logged, never shown).
func resolveRequestError(ref string, err error) *RequestError {
	var withStatus interface{ HTTPStatus() int }
	msg := "resolve " + quote(ref) + ": " + err.Error()
	switch {
	case errors.Is(err, proxy.ErrInternal):
		return nil
	case errors.Is(err, proxy.ErrBadReference):
		return &RequestError{Status: http.StatusBadRequest, Code: "BAD_REFERENCE", Message: msg}
	case errors.Is(err, proxy.ErrAccessDenied):
		return &RequestError{Status: http.StatusForbidden, Code: errorCodes[http.StatusForbidden], Message: msg}
	case errors.As(err, &withStatus) && withStatus.HTTPStatus() == http.StatusNotFound:
		return &RequestError{Status: http.StatusNotFound, Code: "UNKNOWN_IMAGE", Message: msg}
	case errors.Is(err, context.Canceled):
		return &RequestError{Status: http.StatusServiceUnavailable, Code: errorCodes[http.StatusServiceUnavailable], Message: "resolve " + quote(ref) + ": request cancelled"}
	}
	return &RequestError{Status: http.StatusBadGateway, Code: errorCodes[http.StatusBadGateway], Message: msg}
}

// writeRequestError answers err if it is a *RequestError and reports
// whether it was.
func writeRequestError(w http.ResponseWriter, err error) bool {
	var re *RequestError
	if !errors.As(err, &re) {
		return false
	}
	writeCodedError(w, re.Status, re.Code, re.Message)
	return true
}

// The answers, exported for the pages; the old names stay for the tests
// and code written against them.
type (
	imageStatus         = ImageStatus
	reasonView          = ReasonView
	findingSummary      = FindingSummary
	imageSummary        = ImageSummary
	imageList           = ImageList
	vulnerabilityAnswer = VulnerabilityAnswer
	vulnImage           = VulnImage
	vulnFinding         = VulnFinding
	scanView            = ScanView
)

// ImageStatus is the answer to "may this image run, and why".
type ImageStatus struct {
	Ref        string `json:"ref,omitempty"`
	Upstream   string `json:"upstream"`
	Repository string `json:"repository"`
	Digest     string `json:"digest"`
	// Index and Platform: REF named an index, Digest is its manifest for
	// Platform.
	Index         string          `json:"index_digest,omitempty"`
	Platform      string          `json:"platform,omitempty"`
	Verdict       string          `json:"verdict"` // allow, warn, block, pending, unknown
	Rule          string          `json:"rule,omitempty"`
	Mode          string          `json:"mode,omitempty"`
	Reasons       []ReasonView    `json:"reasons"`
	Signature     string          `json:"signature,omitempty"` // the signature check's state
	Signers       []policy.Signer `json:"signers,omitempty"`
	PolicyVersion string          `json:"policy_version,omitempty"`
	DBVersion     string          `json:"db_version,omitempty"`
	EvaluatedAt   time.Time       `json:"evaluated_at,omitzero"`
	ScanState     string          `json:"scan_state,omitempty"`
	Stale         bool            `json:"stale,omitempty"` // findings from an older database than the one in force
	Findings      *FindingSummary `json:"findings,omitempty"`
	// Suppressed are findings VEX statements took out of the verdict, with
	// the document and statement; VEX notes VEX that was not honoured
	// (an attestation not signed with the rule's trust, a statement
	// without justification).
	Suppressed []vex.Suppressed `json:"suppressed,omitempty"`
	VEX        []string         `json:"vex,omitempty"`
	Details    string           `json:"details"`
	// PolicyVerdict is the policy's own verdict (or pending, unknown)
	// when an operator's quarantine or exception changed it; Verdict is
	// then the effective one, the control's reason first.
	PolicyVerdict string            `json:"policy_verdict,omitempty"`
	Quarantine    *store.Quarantine `json:"quarantine,omitempty"`
	Exception     *store.Exception  `json:"exception,omitempty"`
}

// ReasonView is a reason with the vulnerability ids it names.
type ReasonView struct {
	Code            string   `json:"code"`
	Verdict         string   `json:"verdict"`
	Message         string   `json:"message"`
	Vulnerabilities []string `json:"vulnerabilities,omitempty"`
}

// FindingSummary counts findings by severity, and those that are not
// vulnerabilities by kind ("malware", "secret").
type FindingSummary struct {
	Total      int            `json:"total"`
	BySeverity map[string]int `json:"by_severity"`
	ByKind     map[string]int `json:"by_kind,omitempty"`
}

// ImageSummary is one verdict in a list.
type ImageSummary struct {
	Digest     string `json:"digest"`
	Upstream   string `json:"upstream"`
	Repository string `json:"repository"`
	Tag        string `json:"tag,omitempty"`
	// Tags it was pulled by there, newest first (at most 10).
	Tags    []string `json:"tags,omitempty"`
	Verdict string   `json:"verdict"`
	// Control names the operator's control that made Verdict differ from
	// the policy's own, PolicyVerdict: "quarantine" or "exception".
	Control       string    `json:"control,omitempty"`
	PolicyVerdict string    `json:"policy_verdict,omitempty"`
	Rule          string    `json:"rule,omitempty"`
	PolicyVersion string    `json:"policy_version,omitempty"`
	DBVersion     string    `json:"db_version,omitempty"`
	EvaluatedAt   time.Time `json:"evaluated_at,omitzero"`
	// Vulnerabilities are the findings that matched the vulnerability or
	// min_severity filter.
	Vulnerabilities []string `json:"vulnerabilities,omitempty"`
	Details         string   `json:"details"`
}

// ImageList is a page of the images list.
type ImageList struct {
	Images []ImageSummary `json:"images"`
	// NextCursor continues the list; absent on the last page. A page can
	// be shorter than the limit and still have one (work per request is
	// bounded).
	NextCursor string `json:"next_cursor,omitempty"`
}

// VulnerabilityAnswer lists the cached images a vulnerability affects.
type VulnerabilityAnswer struct {
	ID     string      `json:"id"`
	Images []VulnImage `json:"images"`
	// Truncated: more images are affected than listed.
	Truncated bool `json:"truncated,omitempty"`
}

// VulnImage is one cached image a vulnerability affects.
type VulnImage struct {
	Digest       string         `json:"digest"`
	DBVersion    string         `json:"db_version,omitempty"`
	Findings     []VulnFinding  `json:"findings"`
	Repositories []ImageSummary `json:"repositories"`
}

// VulnFinding is one finding of the vulnerability asked about.
type VulnFinding struct {
	ID               string   `json:"id"`
	Aliases          []string `json:"aliases,omitempty"`
	Package          string   `json:"package"`
	InstalledVersion string   `json:"installed_version"`
	FixedVersions    []string `json:"fixed_versions,omitempty"`
	Severity         string   `json:"severity"`
	// Kind, for a malicious package or a file finding ("malware",
	// "secret"); a file finding has a path and layer instead of a package.
	Kind  string `json:"kind,omitempty"`
	Path  string `json:"path,omitempty"`
	Layer string `json:"layer,omitempty"`
}
