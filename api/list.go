package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

const (
	// maxExamined bounds the verdicts one list request looks at past its
	// cursor: a filter that matches little answers a short page and a
	// cursor to go on from, rather than walking the whole store.
	maxExamined = 10 * maxLimit
	// maxExaminedWithFindings is the same bound when a filter needs each
	// image's findings (a scan record read per digest).
	maxExaminedWithFindings = 2 * maxLimit
	// maxGroup bounds the verdicts on one digest held to sort them.
	maxGroup = 10000
	// maxVulnImages bounds the images one vulnerability answer lists.
	maxVulnImages = 1000
)

// effectiveVerdict is the verdict a list shows and filters on.
func effectiveVerdict(d store.DecisionRecord) string {
	if d.Decision == nil || d.Decision.Has(policy.CodeUnscanned) || d.Verdict == "" {
		return verdictPending
	}
	return d.Verdict
}

// listImages answers GET /api/v1/images: verdicts sorted by digest, then
// upstream/repository, or newest first (?sort=recent), a page at a time.
func (h *Handler) listImages(w http.ResponseWriter, req request) {
	q, err := listQueryFrom(req.r.URL.Query())
	if err != nil {
		writeCodedError(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
		return
	}
	list, err := h.ListImages(req.r.Context(), q)
	switch {
	case writeRequestError(w, err):
	case err != nil:
		h.internalError(w, req, "list verdicts", err)
	default:
		writeJSON(w, http.StatusOK, list)
	}
}

// list walks the verdicts in two phases: the store's walk collects the
// candidates past the cursor that the verdict records themselves match
// (no store reads inside the walk: a bbolt read transaction must not open
// another), then the findings filters read each candidate's scan.
func (h *Handler) list(ctx context.Context, lq listQuery) (imageList, error) {
	budget := maxExamined
	if lq.vulnerability != "" || lq.minSeverity != "" {
		budget = maxExaminedWithFindings
	}
	return h.listWithBudget(ctx, lq, budget)
}

// listWithBudget looks at no more than budget verdicts past the cursor.
func (h *Handler) listWithBudget(ctx context.Context, lq listQuery, budget int) (imageList, error) {
	if lq.sort == sortRecent {
		return h.listRecent(ctx, lq, budget)
	}
	needFindings := lq.vulnerability != "" || lq.minSeverity != ""
	var (
		group    []store.DecisionRecord
		cands    []store.DecisionRecord
		examined int
		more     bool // records past last remain
		last     listCursor
	)
	flush := func() {
		slices.SortFunc(group, func(a, b store.DecisionRecord) int {
			return strings.Compare(a.Upstream+"/"+a.Repository, b.Upstream+"/"+b.Repository)
		})
		// A store may list a repository twice (Redis SSCAN while resized).
		group = slices.CompactFunc(group, func(a, b store.DecisionRecord) bool {
			return a.Upstream == b.Upstream && a.Repository == b.Repository
		})
		for _, d := range group {
			where := d.Upstream + "/" + d.Repository
			if lq.cursor != nil && !lq.cursor.after(d.Digest, where) {
				continue
			}
			if examined == budget || (!needFindings && len(cands) == lq.limit) {
				more = true
				return
			}
			examined++
			last = listCursor{Digest: d.Digest, Where: where}
			if lq.matchesRecord(d, h) {
				cands = append(cands, d)
			}
		}
		group = group[:0]
	}
	// The store starts at the cursor's digest: a deep page reads no more
	// than the first.
	from := ""
	if lq.cursor != nil {
		from = lq.cursor.Digest
	}
	err := h.Scans.DecisionsFrom(ctx, from, func(d store.DecisionRecord) bool {
		if lq.cursor != nil && d.Digest < lq.cursor.Digest {
			return true // before the page (a store that cannot seek): skipped without being held
		}
		if len(group) > 0 && group[0].Digest != d.Digest {
			if flush(); more {
				return false
			}
		}
		if len(group) < maxGroup {
			group = append(group, d)
		}
		return true
	})
	if err != nil {
		return imageList{}, err
	}
	if !more && len(group) > 0 {
		flush()
	}
	return h.page(ctx, lq, cands, more, last.encode(), func(d store.DecisionRecord) string {
		return listCursor{Digest: d.Digest, Where: d.Upstream + "/" + d.Repository}.encode()
	})
}

// listRecent is listWithBudget newest first: the store's index by time
// starts just after the cursor, and the walk takes each verdict in turn
// (no group to sort: the index orders verdicts of one instant itself).
func (h *Handler) listRecent(ctx context.Context, lq listQuery, budget int) (imageList, error) {
	needFindings := lq.vulnerability != "" || lq.minSeverity != ""
	var (
		cands    []store.DecisionRecord
		examined int
		more     bool
		last     recentCursor
		after    store.TimeCursor
	)
	if lq.recent != nil {
		after = lq.recent.position()
	}
	err := h.Scans.DecisionsByTime(ctx, after, func(d store.DecisionRecord) bool {
		if examined == budget || (!needFindings && len(cands) == lq.limit) {
			more = true
			return false
		}
		examined++
		last = recentCursorOf(d)
		if lq.matchesRecord(d, h) {
			cands = append(cands, d)
		}
		return true
	})
	if err != nil {
		return imageList{}, err
	}
	return h.page(ctx, lq, cands, more, last.encode(), func(d store.DecisionRecord) string {
		return recentCursorOf(d).encode()
	})
}

// page applies the findings filters to the candidates a walk collected,
// in its order, and makes the page: up to the limit, and a cursor when
// more remain (cursorOf the last one listed, or lastExamined when the
// walk stopped at its budget first).
func (h *Handler) page(ctx context.Context, lq listQuery, cands []store.DecisionRecord, more bool, lastExamined string,
	cursorOf func(store.DecisionRecord) string) (imageList, error) {
	out := imageList{Images: []imageSummary{}}
	needFindings := lq.vulnerability != "" || lq.minSeverity != ""
	var (
		findings   []vulndb.Finding
		findingsOf string
		err        error
	)
	for i, d := range cands {
		var ids []string
		if needFindings {
			if findingsOf != d.Digest {
				if findings, err = h.findingsOf(ctx, d.Digest); err != nil {
					return imageList{}, err
				}
				findingsOf = d.Digest
			}
			if ids = lq.matchingFindings(findings); len(ids) == 0 {
				continue
			}
		}
		out.Images = append(out.Images, h.summaryOf(d, ids))
		if len(out.Images) == lq.limit {
			if i < len(cands)-1 || more {
				out.NextCursor = cursorOf(d)
			}
			return out, nil
		}
	}
	if more {
		out.NextCursor = lastExamined
	}
	return out, nil
}

// matchesRecord applies the filters the verdict record itself (and the
// controls in memory) answer.
func (lq listQuery) matchesRecord(d store.DecisionRecord, h *Handler) bool {
	if v, _ := h.listedVerdict(d); lq.verdict != "" && v != lq.verdict {
		return false
	}
	if lq.upstream != "" && d.Upstream != lq.upstream {
		return false
	}
	if lq.repository != "" {
		if ok, _ := path.Match(lq.repository, d.Repository); !ok {
			return false
		}
	}
	if lq.signed != "" && (lq.signed == signedYes) != signedBy(d) {
		return false
	}
	return true
}

// signedBy reports whether the verdict was made on a verified signature.
func signedBy(d store.DecisionRecord) bool {
	return d.Signature != nil && d.Signature.State == policy.SignatureVerified
}

// matchingFindings lists the ids of the findings that pass the
// vulnerability and severity filters (at most 100).
func (lq listQuery) matchingFindings(findings []vulndb.Finding) []string {
	var ids []string
	for _, f := range findings {
		if lq.vulnerability != "" && !findingIs(f, lq.vulnerability) {
			continue
		}
		if lq.minSeverity != "" && vulndb.SeverityRank(f.Severity) < vulndb.SeverityRank(lq.minSeverity) {
			continue
		}
		if !slices.Contains(ids, f.ID) && len(ids) < 100 {
			ids = append(ids, f.ID)
		}
	}
	return ids
}

// findingIs reports whether f is vulnerability id under any of its names.
func findingIs(f vulndb.Finding, id string) bool {
	if strings.EqualFold(f.ID, id) {
		return true
	}
	for _, names := range [][]string{f.Aliases, f.Upstream} {
		for _, n := range names {
			if strings.EqualFold(n, id) {
				return true
			}
		}
	}
	return false
}

// findingsOf reads the findings of digest's scan (none: nil).
func (h *Handler) findingsOf(ctx context.Context, digest string) ([]vulndb.Finding, error) {
	rec, err := h.Scans.Scan(ctx, digest)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return rec.Findings, nil
}

func (h *Handler) summaryOf(d store.DecisionRecord, ids []string) imageSummary {
	s := imageSummary{
		Digest: d.Digest, Upstream: d.Upstream, Repository: d.Repository, Tag: d.Tag, Tags: d.Tags,
		Rule: d.Rule, PolicyVersion: d.PolicyVersion, DBVersion: d.DBVersion,
		EvaluatedAt: d.UpdatedAt, Vulnerabilities: ids, Details: detailsLink(d.Digest, d.Upstream, d.Repository),
	}
	s.Verdict, s.Control = h.listedVerdict(d)
	if s.Control != "" {
		s.PolicyVerdict = effectiveVerdict(d)
	}
	return s
}

// vulnerability answers GET /api/v1/vulnerabilities/{id}: every cached
// image with a finding named id (its OSV id, an alias or the upstream id
// behind a distribution's id), and the repositories it was pulled from.
func (h *Handler) vulnerability(w http.ResponseWriter, req request, id string) {
	ans, err := h.Vulnerability(req.r.Context(), id)
	switch {
	case writeRequestError(w, err):
	case err != nil:
		h.internalError(w, req, "list the images "+quote(id)+" affects", err)
	default:
		writeJSON(w, http.StatusOK, ans)
	}
}

// vulnerabilityAnswer walks the scan records for Vulnerability.
func (h *Handler) vulnerabilityAnswer(ctx context.Context, id string) (VulnerabilityAnswer, error) {
	ans := vulnerabilityAnswer{ID: id, Images: []vulnImage{}}
	err := h.Scans.Scans(ctx, func(rec store.ScanRecord) bool {
		var hits []vulnFinding
		for _, f := range rec.Findings {
			if findingIs(f, id) && len(hits) < 100 {
				hits = append(hits, vulnFinding{ID: f.ID, Aliases: aliasesOf(f), Package: f.Package,
					InstalledVersion: f.InstalledVersion, FixedVersions: f.FixedVersions, Severity: f.Severity,
					Kind: f.Kind, Path: f.Path, Layer: f.Layer})
			}
		}
		if len(hits) == 0 {
			return true
		}
		if len(ans.Images) == maxVulnImages {
			ans.Truncated = true
			return false
		}
		ans.Images = append(ans.Images, vulnImage{Digest: rec.Digest, DBVersion: rec.DBVersion, Findings: hits, Repositories: []imageSummary{}})
		return true
	})
	if err != nil {
		return VulnerabilityAnswer{}, fmt.Errorf("list scans: %w", err)
	}
	for i := range ans.Images {
		img := &ans.Images[i]
		err := h.Scans.Decisions(ctx, img.Digest, func(d store.DecisionRecord) bool {
			img.Repositories = append(img.Repositories, h.summaryOf(d, nil))
			return len(img.Repositories) < maxDecisionsShown
		})
		if err != nil {
			return VulnerabilityAnswer{}, fmt.Errorf("read verdicts on %s: %w", img.Digest, err)
		}
	}
	return ans, nil
}

// aliasesOf is every other name of a finding's vulnerability: OSV aliases
// and the upstream ids a distribution record names (ALPINE-CVE-… names
// CVE-… there), as the policy's allowlists see them.
func aliasesOf(f vulndb.Finding) []string {
	out := slices.Clone(f.Aliases)
	for _, u := range f.Upstream {
		if !slices.Contains(out, u) && u != f.ID {
			out = append(out, u)
		}
	}
	return out
}
