package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

// Verdicts the image endpoints answer besides the policy's own.
const (
	verdictPending = "pending" // queued or being evaluated
	verdictUnknown = "unknown" // never evaluated here
)

const (
	// maxWait bounds how long ?evaluate=true holds a request.
	maxWait = 5 * time.Minute
	// defaultWait is the wait when ?evaluate=true names none.
	defaultWait = 30 * time.Second
	// pollEvery is how often a waiting request looks for the verdict.
	pollEvery = 100 * time.Millisecond
)

func detailsLink(d, upstream, repo string) string {
	return "/api/v1/scans/" + d + "?repository=" + url.QueryEscape(upstream+"/"+repo)
}

// imageQuery is what GET /api/v1/images?ref= asks.
type imageQuery struct {
	ref      string
	platform v1.Platform
	evaluate bool
	findings bool // add the findings summary (reads the whole scan record)
	wait     time.Duration
}

func parseImageQuery(q url.Values) (imageQuery, error) {
	iq := imageQuery{ref: q.Get("ref"), wait: defaultWait}
	if iq.ref == "" {
		return iq, errors.New("empty ?ref=: want e.g. ?ref=docker.io/library/alpine:3.20")
	}
	if len(iq.ref) > 1024 {
		return iq, errors.New("?ref= is longer than 1024 bytes")
	}
	var err error
	if iq.platform, err = parsePlatform(q.Get("platform")); err != nil {
		return iq, err
	}
	if iq.evaluate, err = parseBool("evaluate", q.Get("evaluate")); err != nil {
		return iq, err
	}
	if iq.findings, err = parseBool("findings", q.Get("findings")); err != nil {
		return iq, err
	}
	if s := q.Get("wait"); s != "" {
		if iq.wait, err = time.ParseDuration(s); err != nil || iq.wait < 0 || iq.wait > maxWait {
			return iq, errors.New("invalid ?wait=" + quote(s) + ": want a duration from 0s to " + maxWait.String() + ", e.g. 30s")
		}
	}
	return iq, nil
}

// parsePlatform reads os/arch[/variant]; empty is linux/amd64, what an
// admission controller on the usual node asks about.
func parsePlatform(s string) (v1.Platform, error) {
	if s == "" {
		return v1.Platform{OS: "linux", Architecture: "amd64"}, nil
	}
	parts := strings.Split(s, "/")
	valid := len(s) <= 64 && (len(parts) == 2 || len(parts) == 3)
	for _, p := range parts {
		valid = valid && p != "" && strings.Trim(p, "abcdefghijklmnopqrstuvwxyz0123456789._-") == ""
	}
	if !valid {
		return v1.Platform{}, errors.New("invalid ?platform=" + quote(s) + ": want os/arch[/variant] in lower case, e.g. linux/arm64")
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

func parseBool(name, s string) (bool, error) {
	switch s {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	}
	return false, errors.New("invalid ?" + name + "=" + quote(s) + ": want true or false")
}

// imageByRef answers GET /api/v1/images?ref=REF: the stored verdict on the
// digest REF resolves to, in the repository REF names. A tag within its
// TTL resolves from the tag cache and the manifest from the content cache:
// no upstream is contacted.
func (h *Handler) imageByRef(w http.ResponseWriter, req request) {
	ctx := req.r.Context()
	iq, err := parseImageQuery(req.r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	st, mediaType, err := h.statusByRef(ctx, iq)
	var rf *resolveFailure
	switch {
	case errors.Is(err, errNoPlatform):
		writeCodedError(w, http.StatusNotFound, "UNKNOWN_PLATFORM", err.Error())
		return
	case errors.As(err, &rf):
		h.resolveError(w, req, iq.ref, rf.err)
		return
	case err != nil:
		h.internalError(w, req, "read verdict on "+st.Digest, err)
		return
	}
	if iq.evaluate && (st.Verdict == verdictUnknown || st.Verdict == verdictPending) {
		if st.Verdict == verdictUnknown {
			// Queue the manifest itself: for an index, only the platform asked about.
			if err := h.Queue.Request(ctx, st.Upstream, st.Repository, digest.Digest(st.Digest), mediaType); err != nil {
				h.queueError(w, req, st.Digest, err)
				return
			}
		}
		if err := h.waitForVerdict(ctx, &st, iq.wait, iq.findings); err != nil {
			h.internalError(w, req, "read verdict on "+st.Digest, err)
			return
		}
	}
	status := http.StatusOK
	if st.Verdict == verdictPending {
		status = http.StatusAccepted
	}
	// Compact: the admission controllers' hot path (indenting cost an
	// eighth of the answer's CPU).
	writeCompactJSON(w, status, st)
}

// statusByRef resolves iq.ref (an index: to its manifest for
// iq.platform) and reads the stored verdict on it; it also answers the
// media type of that manifest. Resolution failures are *resolveFailure.
func (h *Handler) statusByRef(ctx context.Context, iq imageQuery) (ImageStatus, string, error) {
	res, err := h.Resolver.Resolve(ctx, iq.ref)
	if err != nil {
		return ImageStatus{}, "", &resolveFailure{err}
	}
	st := ImageStatus{Ref: iq.ref, Upstream: res.Upstream, Repository: res.Repository, Digest: res.Digest.String()}
	mediaType := res.MediaType
	if isIndex(mediaType) {
		child, err := h.platformManifest(ctx, res.Upstream, res.Repository, res.Digest, iq.platform)
		if err != nil {
			if errors.Is(err, errNoPlatform) {
				return st, "", err
			}
			return st, "", &resolveFailure{err}
		}
		st.Index, st.Platform, st.Digest, mediaType = res.Digest.String(), platformString(child.Platform), child.Digest.String(), string(child.MediaType)
	}
	if err := h.fillStatus(ctx, &st, iq.findings); err != nil {
		return st, "", err
	}
	return st, mediaType, nil
}

// queueError answers a failed queue request.
func (h *Handler) queueError(w http.ResponseWriter, req request, d string, err error) {
	switch {
	case errors.Is(err, pipeline.ErrIndexTooLarge):
		writeError(w, http.StatusBadRequest, "queue scan: "+err.Error())
	case errors.Is(err, pipeline.ErrQueueFull):
		writeError(w, http.StatusServiceUnavailable, "queue scan: "+err.Error())
	default:
		h.internalError(w, req, "queue scan of "+d, err)
	}
}

// waitForVerdict polls the store until the verdict is made, wait passes
// or the client leaves; the answer is then whatever is known.
func (h *Handler) waitForVerdict(ctx context.Context, st *imageStatus, wait time.Duration, withFindings bool) error {
	// The queue request may have settled it (or marked the scan pending).
	if err := h.fillStatus(ctx, st, withFindings); err != nil {
		return err
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for st.Verdict == verdictPending || st.Verdict == verdictUnknown {
		select {
		case <-ctx.Done():
			return nil
		case <-h.Closing:
			return nil
		case <-deadline.C:
			return nil
		case <-tick.C:
		}
		if err := h.fillStatus(ctx, st, withFindings); err != nil {
			return err
		}
	}
	return nil
}

var errNoPlatform = errors.New("no manifest for the platform")

// platformManifest picks the manifest of an index for p; without a
// variant asked for, the first of os/arch.
func (h *Handler) platformManifest(ctx context.Context, upstream, repo string, index digest.Digest, p v1.Platform) (v1.Descriptor, error) {
	children, err := h.Resolver.IndexChildren(ctx, upstream, repo, index)
	if err != nil {
		return v1.Descriptor{}, err
	}
	var have []string
	for _, c := range children {
		// Attestation manifests say unknown/unknown.
		if c.Platform == nil || c.Platform.OS == "unknown" || isIndex(string(c.MediaType)) {
			continue
		}
		if c.Platform.OS == p.OS && c.Platform.Architecture == p.Architecture && (p.Variant == "" || c.Platform.Variant == p.Variant) {
			return c, nil
		}
		if len(have) < 32 {
			have = append(have, platformString(c.Platform))
		}
	}
	return v1.Descriptor{}, fmt.Errorf("%w %s in index %s (it has: %s)", errNoPlatform, platformString(&p), index, strings.Join(have, ", "))
}

func platformString(p *v1.Platform) string {
	if p == nil {
		return ""
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func isIndex(mediaType string) bool {
	return mediaType == string(types.OCIImageIndex) || mediaType == string(types.DockerManifestList)
}

// fillStatus reads the verdict on st's digest in its repository. A known
// verdict is answered from its decision record alone (a few hundred bytes):
// the scan record, with the whole inventory, is read only to tell pending
// from unknown, or when the findings summary is asked for.
func (h *Handler) fillStatus(ctx context.Context, st *imageStatus, withFindings bool) error {
	own, err := h.fillPolicyStatus(ctx, st, withFindings)
	if err != nil {
		return err
	}
	h.overlayStatus(ctx, st, own)
	return nil
}

// fillPolicyStatus is fillStatus with the policy's verdict alone; it
// returns the policy's decision it read (nil: none yet).
func (h *Handler) fillPolicyStatus(ctx context.Context, st *imageStatus, withFindings bool) (own *policy.Decision, err error) {
	*st = imageStatus{Ref: st.Ref, Upstream: st.Upstream, Repository: st.Repository, Digest: st.Digest, Index: st.Index, Platform: st.Platform,
		Verdict: verdictUnknown, Reasons: []reasonView{}, Details: detailsLink(st.Digest, st.Upstream, st.Repository)}
	// decidedOn and current: the verdict's database and the one in force,
	// when they differ.
	var decidedOn, current string
	dec, err := h.Scans.Decision(ctx, st.Digest, st.Upstream, st.Repository)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, err
	default:
		st.Rule, st.PolicyVersion, st.EvaluatedAt, st.DBVersion = dec.Rule, dec.PolicyVersion, dec.UpdatedAt, dec.DBVersion
		if dec.Signature != nil {
			st.Signature, st.Signers = dec.Signature.State, dec.Signature.Signers
		}
		if dec.Decision == nil || dec.Decision.Has(policy.CodeUnscanned) {
			st.Verdict = verdictPending
			break
		}
		own = dec.Decision
		st.Verdict, st.Mode = cmp.Or(string(dec.Decision.Effective), dec.Verdict), string(dec.Decision.Mode)
		st.Suppressed, st.VEX = dec.Decision.Suppressed, dec.Decision.VEX
		st.Rule = cmp.Or(st.Rule, dec.Decision.Rule)
		for _, r := range dec.Decision.Reasons {
			st.Reasons = append(st.Reasons, reasonView{Code: r.Code, Verdict: string(r.Verdict), Message: r.Message, Vulnerabilities: vulnerabilityIDs(r.Data)})
		}
		if h.DBVersion != nil && dec.DBVersion != "" {
			if v := h.DBVersion(); v != "" && v != dec.DBVersion {
				// Decided on findings of another database: stale, unless a
				// re-match against the one in force found the same findings
				// (the record says so), which leaves the verdict standing.
				decidedOn, current = dec.DBVersion, v
			}
		}
		if !withFindings && decidedOn == "" {
			return own, nil
		}
	}
	rec, err := h.Scans.Scan(ctx, st.Digest)
	switch {
	case errors.Is(err, store.ErrNotFound):
		st.Stale = decidedOn != ""
		return own, nil
	case err != nil:
		return nil, err
	}
	if decidedOn != "" {
		st.Stale = rec.DBVersion != current || !rec.FindingsFrom(decidedOn)
		if !withFindings {
			return own, nil
		}
	}
	h.markStale(&rec)
	st.ScanState, st.Stale = rec.State, st.Stale || rec.Stale
	st.DBVersion = cmp.Or(st.DBVersion, rec.DBVersion)
	if st.Verdict == verdictUnknown && rec.State == store.ScanPending {
		st.Verdict = verdictPending
	}
	if withFindings && rec.State == store.ScanDone && rec.Findings != nil {
		st.Findings = summarize(rec.Findings)
	}
	return own, nil
}

// vulnerabilityIDs reads the ids a VULNERABLE reason lists in its data
// (typed when just made, plain JSON when read back from the store).
func vulnerabilityIDs(data map[string]any) []string {
	var ids []string
	add := func(m map[string]any) {
		if id, ok := m["id"].(string); ok && len(ids) < 1000 {
			ids = append(ids, id)
		}
	}
	switch list := data["vulnerabilities"].(type) {
	case []any:
		for _, v := range list {
			if m, ok := v.(map[string]any); ok {
				add(m)
			}
		}
	case []map[string]any:
		for _, m := range list {
			add(m)
		}
	}
	return ids
}

func summarize(findings []vulndb.Finding) *findingSummary {
	s := &findingSummary{Total: len(findings), BySeverity: map[string]int{}}
	for _, f := range findings {
		s.BySeverity[f.Severity]++
		if f.Kind != vulndb.KindVulnerability {
			if s.ByKind == nil {
				s.ByKind = map[string]int{}
			}
			s.ByKind[f.Kind]++
		}
	}
	return s
}
