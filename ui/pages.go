package ui

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/store"
)

// internalError logs what failed and shows a page that names no file or
// store key.
func (h *Handler) internalError(w http.ResponseWriter, r *http.Request, v *visitor, what string, err error) {
	h.log.LogAttrs(r.Context(), slog.LevelError, "ui request failed", slog.String("path", r.URL.Path),
		slog.String("error", what), slog.String("cause", err.Error()))
	h.errorPage(w, r, v, http.StatusInternalServerError, "Internal error", what+" failed; the server log has the cause.")
}

// readError answers an error of an api read method: the caller's mistake
// as a 4xx page with its message, anything else as an internal error.
func (h *Handler) readError(w http.ResponseWriter, r *http.Request, v *visitor, what string, err error) {
	var re *api.RequestError
	if errors.As(err, &re) {
		h.errorPage(w, r, v, re.Status, http.StatusText(re.Status), re.Message)
		return
	}
	h.internalError(w, r, v, what, err)
}

// verdictOrder is the order verdict counts are shown in.
var verdictOrder = []string{"allow", "warn", "block", "pending"}

type overviewView struct {
	Counts     []verdictCount
	Blocked    []api.ReasonCount
	TopVulns   []api.VulnCount
	CacheSize  string
	HitRatio   string
	DBVersion  string
	DBAge      string
	DBState    string
	Banner     string
	Recent     []recentView
	ComputedAt time.Time
	Truncated  bool
}

type verdictCount struct {
	Verdict string
	Count   int
}

type recentView struct {
	Digest, Upstream, Repository string
	From, To                     string
	Reasons                      []string
	At                           time.Time
}

func (h *Handler) overviewPage(w http.ResponseWriter, r *http.Request, v visitor) {
	d := pageData{Title: "Overview", Nav: "overview", Visitor: &v}
	ov, err := h.overview(r.Context())
	if err != nil {
		// Shown as it is: the page never makes numbers up.
		h.log.LogAttrs(r.Context(), slog.LevelError, "ui overview", slog.String("error", err.Error()))
		d.Error = err.Error()
		h.render(w, r, http.StatusOK, "overview", d)
		return
	}
	view := overviewView{Blocked: ov.BlockedLast24h, TopVulns: ov.TopVulnerabilities, CacheSize: humanBytes(ov.CacheBytes),
		HitRatio: "no requests yet", DBVersion: cmp.Or(ov.DBVersion, "none"), DBAge: ago(ov.DBBuiltAt), DBState: ov.DBState,
		ComputedAt: ov.ComputedAt, Truncated: ov.Truncated}
	for _, verdict := range verdictOrder {
		view.Counts = append(view.Counts, verdictCount{verdict, ov.Verdicts[verdict]})
	}
	if total := ov.CacheHits + ov.CacheMisses; total > 0 {
		view.HitRatio = strconv.FormatFloat(100*float64(ov.CacheHits)/float64(total), 'f', 1, 64) + " %"
	}
	switch ov.DBState {
	case "missing":
		view.Banner = "vulnerability database missing: images are not checked for vulnerabilities until one is imported"
	case "stale":
		view.Banner = "vulnerability database stale: built " + ago(ov.DBBuiltAt) + "; findings may be missing"
	}
	for _, c := range ov.RecentChanges {
		view.Recent = append(view.Recent, recentView{Digest: c.Digest, Upstream: c.Upstream, Repository: c.Repository,
			From: c.From, To: c.To, Reasons: c.Reasons, At: c.At})
	}
	d.Page = view
	h.render(w, r, http.StatusOK, "overview", d)
}

// Images list page size: the default and the most a page shows.
const (
	defaultPageSize = 50
	maxPageSize     = 200
)

type imagesView struct {
	Filters    imageFilters
	Images     []imageRow
	Next       string // the next page's URL; "" on the last
	CountText  string
	Severities []string
	Verdicts   []string
}

// imageFilters are the list's query parameters, as the form shows them.
type imageFilters struct {
	Verdict, Upstream, Repository, Severity, Vulnerability, Signed, Sort string
	Limit                                                                int
}

// parseImageFilters reads the list's query; a value given twice or too
// long is refused (the API's checks do the rest).
func parseImageFilters(q url.Values) (imageFilters, api.ListQuery, error) {
	for key, vals := range q {
		if len(vals) > 1 {
			return imageFilters{}, api.ListQuery{}, errors.New(key + " given more than once")
		}
		if len(vals[0]) > 1024 {
			return imageFilters{}, api.ListQuery{}, errors.New(key + " is longer than 1024 bytes")
		}
	}
	f := imageFilters{Verdict: q.Get("verdict"), Upstream: q.Get("upstream"), Repository: q.Get("repository"),
		Severity: q.Get("severity"), Vulnerability: q.Get("vulnerability"), Signed: q.Get("signed"), Sort: q.Get("sort"), Limit: defaultPageSize}
	switch f.Sort {
	case "", "digest", "recent":
	default:
		// The store keeps verdicts in digest order and in an index by
		// time; any other order would need every record in memory.
		return f, api.ListQuery{}, errors.New("invalid sort " + strconv.Quote(shortN(64, f.Sort)) +
			": the list is in digest order (sort=digest) or recently evaluated first (sort=recent)")
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageSize {
			return f, api.ListQuery{}, errors.New("invalid limit " + strconv.Quote(shortN(64, s)) + ": want 1 to " + strconv.Itoa(maxPageSize))
		}
		f.Limit = n
	}
	lq := api.ListQuery{Verdict: f.Verdict, Upstream: f.Upstream, Repository: f.Repository, MinSeverity: f.Severity,
		Vulnerability: f.Vulnerability, Signed: f.Signed, Sort: f.Sort, Limit: f.Limit, Cursor: q.Get("cursor")}
	return f, lq, nil
}

// query is the URL query of these filters (empty values left out).
func (f imageFilters) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"verdict": f.Verdict, "upstream": f.Upstream, "repository": f.Repository,
		"severity": f.Severity, "vulnerability": f.Vulnerability, "signed": f.Signed, "sort": f.Sort} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit != defaultPageSize {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	return q
}

func (h *Handler) images(w http.ResponseWriter, r *http.Request, v visitor) {
	q := r.URL.Query()
	d := pageData{Title: "Images", Nav: "images", Visitor: &v}
	view := imagesView{Severities: severityOrder, Verdicts: verdictOrder}
	if ref := strings.TrimSpace(q.Get("ref")); ref != "" {
		st, err := h.o.API.ImageByRef(r.Context(), ref)
		var re *api.RequestError
		switch {
		case err == nil && st.Verdict != "unknown":
			http.Redirect(w, r, imageURL(st.Digest, st.Upstream, st.Repository), http.StatusSeeOther)
			return
		case err == nil:
			d.Message = "Portcullis has not judged " + short(ref) + " (" + shortHash(st.Digest) + ") yet: pull it through the mirror, or queue a scan."
		case errors.As(err, &re):
			d.Message = "Unknown image: " + short(re.Message)
		default:
			h.internalError(w, r, &v, "look up "+short(ref), err)
			return
		}
	}
	f, lq, err := parseImageFilters(q)
	view.Filters = f
	if err != nil {
		d.Error, d.Page = err.Error(), view
		h.render(w, r, http.StatusBadRequest, "images", d)
		return
	}
	list, err := h.o.API.ListImages(r.Context(), lq)
	var re *api.RequestError
	switch {
	case errors.As(err, &re):
		d.Error, d.Page = re.Message, view
		h.render(w, r, http.StatusBadRequest, "images", d)
		return
	case err != nil:
		h.internalError(w, r, &v, "list images", err)
		return
	}
	if view.Images, err = h.rowsOf(r.Context(), list.Images); err != nil {
		h.internalError(w, r, &v, "read the listed images", err)
		return
	}
	view.CountText = strconv.Itoa(len(list.Images)) + " verdicts on this page"
	if lq.Cursor != "" {
		view.CountText += " (continued)"
	}
	if list.NextCursor != "" {
		next := f.query()
		next.Set("cursor", list.NextCursor)
		view.Next = "/ui/images?" + next.Encode()
		if len(list.Images) < f.Limit {
			view.CountText += "; the search stopped early to stay fast: more may follow"
		}
	}
	d.Page = view
	h.render(w, r, http.StatusOK, "images", d)
}

// rescan queues a scan of the image (POST, admin, CSRF-checked by
// serveAuthorized), then goes back to its page.
func (h *Handler) rescan(w http.ResponseWriter, r *http.Request, v visitor, raw string) {
	dg, err := digest.Parse(raw)
	if err != nil {
		h.errorPage(w, r, &v, http.StatusBadRequest, "Bad request", "invalid digest "+strconv.Quote(short(raw)))
		return
	}
	view, err := h.o.API.ScanView(r.Context(), dg.String(), r.PostFormValue("repository"))
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.errorPage(w, r, &v, http.StatusNotFound, "Not found", "No scan of "+dg.String()+" is stored.")
		return
	case err != nil:
		h.readError(w, r, &v, "read "+dg.String(), err)
		return
	}
	upstream, repo, _ := strings.Cut(view.VerdictIn, "/")
	if view.VerdictIn == "" {
		upstream, repo = view.Upstream, view.Repository
	}
	mediaType := ""
	if view.Facts != nil {
		mediaType = view.Facts.ManifestMediaType
	}
	if err := h.o.API.Queue.Request(r.Context(), upstream, repo, dg, mediaType); err != nil {
		h.internalError(w, r, &v, "queue a scan of "+dg.String(), err)
		return
	}
	h.log.InfoContext(r.Context(), "ui: scan queued", "digest", dg.String(), "repository", upstream+"/"+repo, "by", v.name)
	http.Redirect(w, r, imageURL(dg.String(), upstream, repo), http.StatusSeeOther)
}

// imageRow is a list entry with what the list itself does not carry: the
// image's findings by severity, size and age (its scan record), and who
// signed it (its verdict record in that repository).
type imageRow struct {
	api.ImageSummary
	TopSeverity string
	Counts      []severityCount // only severities with findings, most severe first
	Scanned     bool
	Size        int64 // -1: unknown
	Created     time.Time
	Platform    string
	Signature   string // the signature check's state; "" when the rule asks for none
	Signer      string
}

type severityCount struct {
	Severity string
	Count    int
}

// rowsOf reads, for one page (at most maxPageSize entries), each digest's
// scan record once and each entry's verdict record.
func (h *Handler) rowsOf(ctx context.Context, list []api.ImageSummary) ([]imageRow, error) {
	scans := map[string]*store.ScanRecord{}
	rows := make([]imageRow, 0, len(list))
	for _, s := range list {
		row := imageRow{ImageSummary: s, Size: -1}
		rec, seen := scans[s.Digest]
		if !seen {
			r, err := h.o.API.Scans.Scan(ctx, s.Digest)
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				return nil, fmt.Errorf("read scan %s: %w", s.Digest, err)
			default:
				rec = &r
			}
			scans[s.Digest] = rec
		}
		if rec != nil {
			row.Scanned = rec.State == store.ScanDone
			if f := rec.Facts; f != nil {
				row.Size, row.Created, row.Platform = f.CompressedSize, f.Created, f.Platform
			}
			by := map[string]int{}
			for _, f := range rec.Findings {
				by[strings.ToUpper(f.Severity)]++
			}
			for _, sev := range severityOrder {
				if by[sev] > 0 {
					row.Counts = append(row.Counts, severityCount{sev, by[sev]})
					if row.TopSeverity == "" {
						row.TopSeverity = sev
					}
				}
			}
		}
		dec, err := h.o.API.Scans.Decision(ctx, s.Digest, s.Upstream, s.Repository)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return nil, fmt.Errorf("read verdict on %s in %s/%s: %w", s.Digest, s.Upstream, s.Repository, err)
		case dec.Signature != nil:
			row.Signature = dec.Signature.State
			if len(dec.Signature.Signers) > 0 {
				sg := dec.Signature.Signers[0]
				row.Signer = cmp.Or(sg.Subject, sg.KeyID, sg.Issuer)
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// severityOrder lists severities from the most severe.
var severityOrder = []string{"CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN"}
