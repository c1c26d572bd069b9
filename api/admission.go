package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy"
)

// Admission configures the Kubernetes admission webhook
// (POST /api/v1/admission and /api/v1/admission/mutate).
type Admission struct {
	// Gate judges images exactly as the pull path does (stored verdict,
	// else evaluation within the rule's on_unscanned wait, then its
	// "then"). Nil: scanning is off, every image is admitted with a warning.
	Gate proxy.Gate
	// Audit admits pods with blocked images, with a warning instead.
	Audit bool
	// Timeout bounds one review; zero: 8 s.
	Timeout time.Duration
	// AllowUnknownRegistries admits images of registries that are not
	// configured upstreams (with a warning); by default they are denied,
	// as nodes cannot pull them through the mirror.
	AllowUnknownRegistries bool
	// ExemptNamespaces are admitted without a look.
	ExemptNamespaces []string
	// Platform whose manifest of a multi-platform image is judged; zero:
	// linux/amd64.
	Platform v1.Platform
}

const (
	defaultAdmissionTimeout = 8 * time.Second
	// admissionConcurrency bounds the images of one review judged at once.
	admissionConcurrency = 4
	// Bounds of the answer: the API server shows the message to whoever
	// applied the object, and caps warnings itself.
	maxDenialMessage = 4096
	maxWarnings      = 16
	maxWarningLength = 512
)

// judgement is the verdict on one image of a review.
type judgement struct {
	image   string // as the pod names it
	pinned  string // registry/repository@digest judged; "" if not resolved
	verdict proxy.Verdict
	message string
}

// admissionReview answers POST /api/v1/admission (mutate false) and
// /api/v1/admission/mutate. Every review decoded gets a review back with
// 200; only a body that is no review at all gets a 400.
func (h *Handler) admissionReview(w http.ResponseWriter, req request, mutate bool) {
	r := req.r
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReviewBytes))
	if err != nil {
		writeCodedError(w, http.StatusBadRequest, "BAD_REVIEW", "read AdmissionReview: "+err.Error())
		return
	}
	review, err := decodeReview(body)
	if errors.Is(err, errNotAReview) {
		writeCodedError(w, http.StatusBadRequest, "BAD_REVIEW", "want an AdmissionReview (admission.k8s.io/v1) as JSON: "+err.Error())
		return
	}
	if err != nil {
		writeReview(w, review, errorResponse(review, http.StatusBadRequest, "portcullis: malformed AdmissionReview: "+err.Error()))
		return
	}
	a := h.Admission
	timeout := cmpDuration(a.Timeout, defaultAdmissionTimeout)
	// The API server says how long it waits (?timeout=10s): answer before.
	if s := r.URL.Query().Get("timeout"); s != "" {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			timeout = min(timeout, d*8/10)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	writeReview(w, review, h.admit(ctx, req, review.Request, mutate))
}

func cmpDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// admit decides one admission request.
func (h *Handler) admit(ctx context.Context, req request, ar *admissionRequest, mutate bool) *admissionResponse {
	resp := &admissionResponse{UID: ar.UID, Allowed: true}
	a := h.Admission
	if ar.Operation != opCreate && ar.Operation != opUpdate {
		return resp // DELETE and CONNECT start no container
	}
	if slices.Contains(a.ExemptNamespaces, ar.Namespace) {
		return resp
	}
	images, ok, err := podImages(ar)
	if err != nil {
		return &admissionResponse{UID: ar.UID, Result: &admissionStatus{Status: statusFailure, Code: http.StatusBadRequest,
			Reason: reasonBadRequest, Message: "portcullis: " + truncate(err.Error(), maxDenialMessage)}}
	}
	if !ok {
		resp.Warnings = []string{"portcullis: " + truncate(ar.Kind.Kind, 64) + " holds no pod spec; not checked (narrow the webhook's rules)"}
		return resp
	}
	if a.Gate == nil {
		resp.Warnings = []string{"portcullis: scanning is off (scan.enabled: false); images are not judged"}
		return resp
	}
	// An update is judged on the images it adds: scaling or relabelling a
	// workload must not fail because an image it already runs has been
	// blocked since (its new pods are judged as they are created).
	before := map[string]bool{}
	if ar.Operation == opUpdate && len(ar.OldObject) > 0 && string(ar.OldObject) != "null" {
		old := *ar
		old.Object = ar.OldObject
		if oldImages, ok, err := podImages(&old); ok && err == nil {
			for _, ci := range oldImages {
				before[ci.Image] = true
			}
		}
	}
	distinct := map[string]*judgement{}
	var order []string
	for _, ci := range images {
		if _, seen := distinct[ci.Image]; seen || before[ci.Image] {
			continue
		}
		if len(order) == maxDistinctImages {
			return &admissionResponse{UID: ar.UID, Result: &admissionStatus{Status: statusFailure, Code: http.StatusBadRequest,
				Reason: reasonBadRequest, Message: fmt.Sprintf("portcullis: more than %d distinct images in one object", maxDistinctImages)}}
		}
		distinct[ci.Image] = &judgement{image: ci.Image}
		order = append(order, ci.Image)
	}
	h.judgeAll(ctx, req, order, distinct)

	var denials, warnings, blocked []string
	for _, image := range order {
		j := distinct[image]
		if j.verdict == proxy.Block {
			blocked = append(blocked, j.image)
		}
		switch {
		case j.verdict == proxy.Block && a.Audit:
			warnings = append(warnings, "portcullis (audit mode) would deny "+j.image+": "+j.message)
		case j.verdict == proxy.Block:
			denials = append(denials, j.image+": "+j.message)
		case j.verdict == proxy.Warn:
			warnings = append(warnings, "portcullis: "+j.image+": "+j.message)
		}
	}
	for i, wmsg := range warnings {
		if i == maxWarnings {
			resp.Warnings = append(resp.Warnings, fmt.Sprintf("portcullis: %d more warnings", len(warnings)-maxWarnings))
			break
		}
		resp.Warnings = append(resp.Warnings, truncate(wmsg, maxWarningLength))
	}
	if len(blocked) > 0 {
		// Operators see refusals (and, in audit mode, what would be
		// refused) without the API server's audit log.
		h.logger().LogAttrs(ctx, slog.LevelInfo, "admission", slog.String("request_id", req.id), slog.String("uid", ar.UID),
			slog.String("kind", ar.Kind.Kind), slog.String("namespace", ar.Namespace), slog.String("name", ar.Name),
			slog.Bool("allowed", len(denials) == 0), slog.Bool("audit", a.Audit), slog.Int("denied_images", len(blocked)),
			slog.String("denied", truncate(strings.Join(blocked, " "), maxDenialMessage)))
	}
	if len(denials) > 0 {
		resp.Allowed = false
		resp.Result = &admissionStatus{Status: statusFailure, Code: http.StatusForbidden, Reason: reasonForbidden,
			Message: truncate("portcullis denied "+strings.Join(denials, "; "), maxDenialMessage)}
		return resp
	}
	if mutate {
		if err := pinImages(resp, images, distinct); err != nil {
			return errorResponse(&admissionReview{Request: ar}, http.StatusInternalServerError, "portcullis: "+err.Error())
		}
	}
	return resp
}

// judgeAll judges each image, a few at a time, until ctx ends; an image
// whose judgement ctx cut short is blocked with that said.
func (h *Handler) judgeAll(ctx context.Context, req request, order []string, out map[string]*judgement) {
	sem := make(chan struct{}, admissionConcurrency)
	var wg sync.WaitGroup
	for _, image := range order {
		j := out[image]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			h.judge(ctx, req, j)
		})
	}
	wg.Wait()
}

// judge resolves one image through the mirror and asks the gate about the
// manifest a node would pull.
func (h *Handler) judge(ctx context.Context, req request, j *judgement) {
	a := h.Admission
	ref, registry, err := normalizeImage(j.image)
	if err != nil {
		j.verdict, j.message = proxy.Block, "invalid image reference: "+err.Error()
		return
	}
	res, err := h.Resolver.Resolve(ctx, ref)
	if err != nil {
		j.verdict, j.message = h.resolveVerdict(ctx, req, ref, registry, err)
		return
	}
	j.pinned = res.Upstream + "/" + res.Repository + "@" + res.Digest.String()
	subject := proxy.Subject{Upstream: res.Upstream, Repository: res.Repository, Reference: referenceOf(ref), Digest: res.Digest, MediaType: res.MediaType}
	if isIndex(res.MediaType) {
		platform := a.Platform
		if platform.OS == "" {
			platform = v1.Platform{OS: "linux", Architecture: "amd64"}
		}
		child, err := h.platformManifest(ctx, res.Upstream, res.Repository, res.Digest, platform)
		if err != nil {
			j.verdict, j.message = h.resolveVerdict(ctx, req, ref, registry, err)
			return
		}
		subject.Digest, subject.MediaType = digest.Digest(child.Digest.String()), string(child.MediaType)
	}
	dec, err := a.Gate.Check(ctx, subject)
	if err != nil {
		j.verdict = proxy.Block
		if ctx.Err() != nil {
			j.message = "not judged within the admission timeout; try again"
			return
		}
		h.logAdmission(req, "judge "+ref, err)
		j.message = "could not be judged: " + proxy.InternalMessage(req.id)
		return
	}
	j.verdict, j.message = dec.Verdict, dec.Message
	if j.message == "" && dec.Verdict != proxy.Allow {
		j.message = "refused by policy"
	}
}

// resolveVerdict is the verdict on an image that could not be resolved: a
// node could not pull it through the mirror either.
func (h *Handler) resolveVerdict(ctx context.Context, req request, ref, registry string, err error) (proxy.Verdict, string) {
	var withStatus interface{ HTTPStatus() int }
	switch {
	case errors.Is(err, proxy.ErrUnknownRegistry):
		msg := "registry " + registry + " is not served by this mirror (not through the mirror)"
		if h.Admission.AllowUnknownRegistries {
			return proxy.Warn, msg + "; admitted as api.admission.unknown_registries is allow"
		}
		return proxy.Block, msg
	case errors.Is(err, errNoPlatform):
		return proxy.Block, err.Error()
	case errors.Is(err, proxy.ErrInternal):
		h.logAdmission(req, "resolve "+ref, err)
		return proxy.Block, "could not be resolved: " + proxy.InternalMessage(req.id)
	case errors.Is(err, proxy.ErrAccessDenied), errors.Is(err, proxy.ErrBadReference):
		return proxy.Block, err.Error()
	case errors.As(err, &withStatus) && withStatus.HTTPStatus() == http.StatusNotFound:
		return proxy.Block, "not found through the mirror: " + err.Error()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return proxy.Block, "not resolved within the admission timeout; try again"
	case ctx.Err() != nil:
		// The upstream client reports its own cause (no answer in time),
		// but it was the review's deadline that cut the resolution short.
		return proxy.Block, "not resolved within the admission timeout; try again (" + err.Error() + ")"
	}
	return proxy.Block, "could not be resolved through the mirror: " + err.Error()
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.Default()
	}
	return h.Logger
}

func (h *Handler) logAdmission(req request, what string, err error) {
	h.logger().LogAttrs(req.r.Context(), slog.LevelError, "admission review failed",
		slog.String("request_id", req.id), slog.String("error", what), slog.String("cause", err.Error()))
}

// referenceOf is the tag or digest of a normalized reference.
func referenceOf(ref string) string {
	if i := strings.LastIndex(ref, "@"); i >= 0 {
		return ref[i+1:]
	}
	return ref[strings.LastIndex(ref, ":")+1:]
}

// jsonPatchOp is one RFC 6902 operation.
type jsonPatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value string `json:"value"`
}

// pinImages adds the patch that replaces each image with the digest that
// was judged (for a multi-platform image, the index digest: the node
// still picks its platform, from content that cannot change).
func pinImages(resp *admissionResponse, images []containerImage, judged map[string]*judgement) error {
	var ops []jsonPatchOp
	for _, ci := range images {
		j := judged[ci.Image]
		if j == nil || j.pinned == "" || j.pinned == ci.Image {
			continue
		}
		ops = append(ops, jsonPatchOp{Op: "replace", Path: ci.Path, Value: j.pinned})
	}
	if len(ops) == 0 {
		return nil
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return fmt.Errorf("encode patch: %w", err)
	}
	resp.Patch, resp.PatchType = patch, patchTypeJSONPatch
	return nil
}

// errorResponse is the answer to a review that cannot be judged: not
// allowed, with the reason in the status.
func errorResponse(review *admissionReview, code int32, msg string) *admissionResponse {
	resp := &admissionResponse{Result: &admissionStatus{Status: statusFailure, Code: code,
		Reason: reasonBadRequest, Message: truncate(msg, maxDenialMessage)}}
	if code >= 500 {
		resp.Result.Reason = reasonInternal
	}
	if review != nil && review.Request != nil {
		resp.UID = review.Request.UID
	}
	return resp
}

// writeReview answers with an AdmissionReview v1 carrying resp.
func writeReview(w http.ResponseWriter, _ *admissionReview, resp *admissionResponse) {
	out := admissionReview{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview", Response: resp}
	writeCompactJSON(w, http.StatusOK, out)
}
