package ui

import (
	"cmp"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

// maxFindingsShown bounds the findings table of one image.
const maxFindingsShown = 2000

type imageView struct {
	Digest, Upstream, Repository, Tag string
	Tags                              []string
	Verdict, Rule, Mode               string
	Reasons                           []policy.Reason
	Signature                         *policy.SignatureFacts
	ScanState, ScanError, DBWarning   string
	Stale                             bool
	Created                           time.Time
	CompressedSize                    int64
	LayerCount                        int
	Platform                          string
	HasFacts                          bool
	Findings                          []findingRow
	FindingsTruncated                 bool
	History                           []store.VerdictChange
	Others                            []store.DecisionRecord // the verdicts in other repositories
	SBOMCycloneDX, SBOMSPDX, SARIF    string
	VerifyCommand                     string
	Signing                           bool
	RescanURL                         string
}

type findingRow struct {
	vulndb.Finding
	Layer string
}

func (h *Handler) image(w http.ResponseWriter, r *http.Request, v visitor, raw string) {
	repository := r.URL.Query().Get("repository")
	view, err := h.o.API.ScanView(r.Context(), raw, repository)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.errorPage(w, r, &v, http.StatusNotFound, "Not found", "No scan of "+short(raw)+" is stored: pull it through the mirror, or queue a scan.")
		return
	case err != nil:
		h.readError(w, r, &v, "read image "+short(raw), err)
		return
	}
	iv := imageView{Digest: view.Digest, Upstream: view.Upstream, Repository: view.Repository, Tag: view.Tag, Tags: view.Tags,
		Verdict: cmp.Or(view.Verdict, "pending"), Rule: view.Rule, Signature: view.Signature,
		ScanState: view.State, ScanError: view.Error, DBWarning: view.DBWarning, Stale: view.Stale, History: view.History,
		Signing: h.o.Signing}
	if up, repo, ok := strings.Cut(view.VerdictIn, "/"); ok {
		iv.Upstream, iv.Repository = up, repo
	}
	if dec := view.Decision; dec != nil {
		iv.Mode, iv.Reasons = string(dec.Mode), dec.Reasons
		iv.Rule = cmp.Or(iv.Rule, dec.Rule)
		if dec.Has(policy.CodeUnscanned) {
			iv.Verdict = "pending"
		} else {
			iv.Verdict = cmp.Or(string(dec.Effective), iv.Verdict)
		}
	}
	if f := view.Facts; f != nil {
		iv.HasFacts, iv.Created, iv.CompressedSize, iv.LayerCount, iv.Platform = true, f.Created, f.CompressedSize, f.LayerCount, f.Platform
	}
	layers := map[string]string{}
	if inv := view.Inventory; inv != nil {
		for _, p := range inv.Packages {
			layers[p.Ecosystem+"\x00"+p.Name+"\x00"+p.Version] = p.Layer
		}
	}
	for i, f := range view.Findings {
		if i == maxFindingsShown {
			iv.FindingsTruncated = true
			break
		}
		iv.Findings = append(iv.Findings, findingRow{Finding: f, Layer: layers[f.Ecosystem+"\x00"+f.Package+"\x00"+f.InstalledVersion]})
	}
	slices.SortStableFunc(iv.Findings, func(a, b findingRow) int {
		return vulndb.SeverityRank(b.Severity) - vulndb.SeverityRank(a.Severity)
	})
	for _, d := range view.Decisions {
		if d.Upstream != iv.Upstream || d.Repository != iv.Repository {
			iv.Others = append(iv.Others, d)
		}
	}
	base := "/api/v1/scans/" + url.PathEscape(view.Digest)
	iv.SBOMCycloneDX, iv.SBOMSPDX, iv.SARIF = base+"/sbom?format=cyclonedx", base+"/sbom?format=spdx", base+"/report?format=sarif"
	iv.VerifyCommand = h.verifyCommand(r, iv.Upstream, iv.Repository, view.Digest)
	iv.RescanURL = "/ui/images/" + url.PathEscape(view.Digest) + "/scan"
	h.render(w, r, http.StatusOK, "image", pageData{Title: "Image", Nav: "images", Visitor: &v, Page: iv})
}

// verifyCommand is the cosign command that checks the verdict Portcullis
// published about the image, through the mirror (README, "Policy and
// trust").
func (h *Handler) verifyCommand(r *http.Request, upstream, repo, digest string) string {
	if len(upstream)+len(repo) > maxRefLink {
		return "" // no real repository has such a name; never shown whole
	}
	mirror := r.Host
	if u, err := url.Parse(h.o.PublicURL); err == nil && u.Host != "" {
		mirror = u.Host
	}
	return "cosign verify-attestation --key portcullis.pub --insecure-ignore-tlog --type " + pipeline.VerdictPredicateType +
		" " + mirror + "/" + upstream + "/" + repo + "@" + digest
}

type vulnerabilityView struct {
	ID        string
	Summary   string
	Severity  string
	Aliases   []string
	Fixed     []string
	Images    []api.VulnImage
	Truncated bool
}

// maxListed bounds the aliases and fixed versions a vulnerability page lists.
const maxListed = 100

func (h *Handler) vulnerability(w http.ResponseWriter, r *http.Request, v visitor, id string) {
	ans, err := h.o.API.Vulnerability(r.Context(), id)
	if err != nil {
		h.readError(w, r, &v, "list the images "+short(id)+" affects", err)
		return
	}
	view := vulnerabilityView{ID: ans.ID, Images: ans.Images, Truncated: ans.Truncated}
	add := func(list *[]string, s string) {
		if s != "" && !slices.Contains(*list, s) && len(*list) < maxListed {
			*list = append(*list, s)
		}
	}
	for _, img := range ans.Images {
		for _, f := range img.Findings {
			if f.ID != ans.ID {
				add(&view.Aliases, f.ID)
			}
			for _, a := range f.Aliases {
				if a != ans.ID {
					add(&view.Aliases, a)
				}
			}
			for _, fx := range f.FixedVersions {
				add(&view.Fixed, f.Package+" "+fx)
			}
			if vulndb.SeverityRank(f.Severity) >= vulndb.SeverityRank(view.Severity) {
				view.Severity = f.Severity
			}
		}
	}
	view.Summary = h.summaryOf(r, ans)
	h.render(w, r, http.StatusOK, "vulnerability", pageData{Title: "Vulnerability", Nav: "images", Visitor: &v, Page: view})
}

// summaryOf reads the advisory's summary from the first affected image's
// scan (the list answer carries no summaries).
func (h *Handler) summaryOf(r *http.Request, ans api.VulnerabilityAnswer) string {
	if len(ans.Images) == 0 {
		return ""
	}
	rec, err := h.o.API.Scans.Scan(r.Context(), ans.Images[0].Digest)
	if err != nil {
		return ""
	}
	for _, f := range rec.Findings {
		if f.ID == ans.Images[0].Findings[0].ID && f.Summary != "" {
			return f.Summary
		}
	}
	return ""
}

type policyView struct {
	Version  string
	LoadedAt time.Time
	Rules    []policy.Rule
	Ref      string
	WhatIf   *whatIfView
}

type whatIfView struct {
	Image    api.ImageStatus
	Outcomes []pipeline.RuleOutcome
}

func (h *Handler) policyPage(w http.ResponseWriter, r *http.Request, v visitor) {
	pol := h.o.Policy.Policy()
	view := policyView{Version: pol.Version(), LoadedAt: h.o.Policy.PolicyLoadedAt(), Rules: pol.Rules}
	d := pageData{Title: "Policy", Nav: "policy", Visitor: &v}
	status := http.StatusOK
	if ref := strings.TrimSpace(r.URL.Query().Get("ref")); ref != "" {
		view.Ref = ref
		st, err := h.o.API.ImageByRef(r.Context(), ref)
		var re *api.RequestError
		switch {
		case errors.As(err, &re) && re.Status == http.StatusNotFound:
			// Neither cached nor upstream: nothing stored to judge.
			d.Message = short(ref) + " is not scanned yet; pull it or queue a scan. (" + short(re.Message) + ")"
		case errors.As(err, &re):
			d.Error, status = "Cannot evaluate "+short(ref)+": "+re.Message, re.Status
		case err != nil:
			h.internalError(w, r, &v, "look up "+short(ref), err)
			return
		default:
			outcomes, err := h.o.Policy.WhatIf(r.Context(), st.Upstream, st.Repository, st.Digest)
			switch {
			case errors.Is(err, store.ErrNotFound):
				d.Message = short(ref) + " is not scanned yet; pull it or queue a scan."
			case err != nil:
				h.internalError(w, r, &v, "evaluate "+short(ref), err)
				return
			default:
				view.WhatIf = &whatIfView{Image: st, Outcomes: outcomes}
			}
		}
	}
	d.Page = view
	h.render(w, r, status, "policy", d)
}
