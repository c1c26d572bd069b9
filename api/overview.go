package api

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
)

// BlockedPullsCounter names the shared counter of manifest pulls the gate
// refused, by the code of the block's first reason (store.Counters).
const BlockedPullsCounter = "blocked-pulls"

const (
	// overviewTTL is how long the aggregates of one walk are served as
	// they are; until overviewStale they are still served at once while a
	// walk refreshes them in the background (a walk of 10,000 images takes
	// about a second), after it a request waits for the walk.
	overviewTTL   = 30 * time.Second
	overviewStale = 5 * time.Minute
	// overviewWalkTimeout bounds one walk, whoever asked for it.
	overviewWalkTimeout = time.Minute
	// maxOverviewRecords bounds the verdicts and the scan records one walk
	// reads (each); past it the aggregates are marked truncated.
	maxOverviewRecords = 200_000
	// maxTrackedVulns bounds the vulnerability ids one walk counts.
	maxTrackedVulns = 20_000
	maxTopVulns     = 10
	maxRecent       = 20
)

// DB states of Overview.DBState.
const (
	DBOK      = "ok"
	DBMissing = "missing"
	DBStale   = "stale"
)

// Overview is what the dashboard's first page shows; also GET
// /api/v1/overview.
type Overview struct {
	// Verdicts counts (digest, repository) verdicts: allow, warn, block,
	// pending (every one present, 0 when none).
	Verdicts map[string]int `json:"verdicts"`
	// BlockedLast24h: pulls refused in the last 24 h (hourly buckets, so up
	// to 25 h), across replicas, by the first reason's code, most first.
	BlockedLast24h []ReasonCount `json:"blocked_last_24h"`
	// TopVulnerabilities among cached images: the ids affecting most images.
	TopVulnerabilities []VulnCount `json:"top_vulnerabilities"`
	CacheBytes         int64       `json:"cache_bytes"` // -1 when unknown
	// CacheHits and CacheMisses count manifest and blob answers from the
	// cache and from upstream since this replica started.
	CacheHits   int64     `json:"cache_hits"`
	CacheMisses int64     `json:"cache_misses"`
	DBVersion   string    `json:"db_version,omitempty"`
	DBBuiltAt   time.Time `json:"db_built_at,omitzero"`
	DBState     string    `json:"db_state"` // ok, missing, stale
	// RecentChanges are the newest verdict changes, newest first.
	RecentChanges []RecentChange `json:"recent_changes"`
	// ComputedAt is when the aggregates (verdicts, vulnerabilities, recent
	// changes) were walked: they may be up to 30 s old.
	ComputedAt time.Time `json:"computed_at"`
	// Truncated: the store held more records than one walk reads, so the
	// aggregates count only part of them.
	Truncated bool `json:"truncated,omitempty"`
}

// ReasonCount is how many pulls a reason code refused.
type ReasonCount struct {
	Code  string `json:"code"`
	Count int64  `json:"count"`
}

// VulnCount is how many cached images one vulnerability affects.
type VulnCount struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Images   int    `json:"images"`
}

// RecentChange is one verdict change and the image it happened to.
type RecentChange struct {
	Digest     string `json:"digest"`
	Upstream   string `json:"upstream"`
	Repository string `json:"repository"`
	store.VerdictChange
}

// DBStatus is the vulnerability database in force, as the overview shows it.
type DBStatus struct {
	Version string // "" when there is none
	BuiltAt time.Time
}

// overviewCache holds the last walk's aggregates; flight makes concurrent
// requests share one walk (and one counter read).
type overviewCache struct {
	mu     sync.Mutex
	agg    overviewAggregates
	at     time.Time
	flight singleflight.Group
}

// overviewAggregates are the parts of an Overview one walk computes.
type overviewAggregates struct {
	verdicts  map[string]int
	top       []VulnCount
	recent    []RecentChange
	truncated bool
	at        time.Time
}

// Overview answers the dashboard's first page: the aggregates of one
// bounded walk of the store (cached 30 s, one walk at a time), the blocked
// pulls of the last day from the shared counters, and this replica's cache
// and database state.
func (h *Handler) Overview(ctx context.Context) (Overview, error) {
	agg, err := h.overviewAggregates(ctx)
	if err != nil {
		return Overview{}, err
	}
	// Copies: the cached aggregates are shared by every caller.
	ov := Overview{
		Verdicts: maps.Clone(agg.verdicts), TopVulnerabilities: slices.Clone(agg.top), RecentChanges: slices.Clone(agg.recent),
		ComputedAt: agg.at, Truncated: agg.truncated, CacheBytes: -1, BlockedLast24h: []ReasonCount{},
	}
	if ov.BlockedLast24h, err = h.blockedLast24h(ctx); err != nil {
		return Overview{}, err
	}
	if h.CacheBytes != nil {
		ov.CacheBytes = h.CacheBytes()
	}
	if h.CacheCounts != nil {
		ov.CacheHits, ov.CacheMisses = h.CacheCounts()
	}
	ov.DBState = DBMissing
	if h.DBStatus != nil {
		st, err := h.DBStatus(ctx)
		if err != nil {
			return Overview{}, fmt.Errorf("read vulnerability database status: %w", err)
		}
		ov.DBVersion, ov.DBBuiltAt = st.Version, st.BuiltAt
		switch {
		case st.Version == "":
		case h.DBMaxAge > 0 && time.Since(st.BuiltAt) > h.DBMaxAge:
			ov.DBState = DBStale
		default:
			ov.DBState = DBOK
		}
	}
	return ov, nil
}

// overviewAggregates returns the cached aggregates, walking the store when
// they are older than overviewTTL: in the background while they are younger
// than overviewStale, else waited for. The walk runs detached from the
// request that started it (others may be waiting on it), bounded in time.
func (h *Handler) overviewAggregates(ctx context.Context) (overviewAggregates, error) {
	c := &h.overview
	c.mu.Lock()
	agg, age, cached := c.agg, time.Since(c.at), !c.at.IsZero()
	c.mu.Unlock()
	if cached && age < overviewTTL {
		return agg, nil
	}
	ch := c.flight.DoChan("walk", func() (any, error) {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), overviewWalkTimeout)
		defer cancel()
		agg, err := h.walkOverview(wctx)
		if err != nil {
			h.logger().Warn("overview: walk of the store failed", "err", err)
			return nil, err
		}
		c.mu.Lock()
		c.agg, c.at = agg, time.Now()
		c.mu.Unlock()
		return agg, nil
	})
	if cached && age < overviewStale {
		return agg, nil
	}
	select {
	case <-ctx.Done():
		return overviewAggregates{}, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return overviewAggregates{}, res.Err
		}
		return res.Val.(overviewAggregates), nil
	}
}

// walkOverview reads every verdict (counts, recent changes), then every
// scan record (vulnerabilities), each walk bounded. Nothing else is read
// inside a walk: a bbolt read transaction must not open another.
func (h *Handler) walkOverview(ctx context.Context) (overviewAggregates, error) {
	agg := overviewAggregates{
		verdicts: map[string]int{string(policy.Allow): 0, string(policy.Warn): 0, string(policy.Block): 0, verdictPending: 0},
		top:      []VulnCount{}, recent: []RecentChange{},
	}
	n := 0
	err := h.Scans.Decisions(ctx, "", func(d store.DecisionRecord) bool {
		if n++; n > maxOverviewRecords {
			agg.truncated = true
			return false
		}
		if v, _ := h.listedVerdict(d); v != "" {
			if _, known := agg.verdicts[v]; known {
				agg.verdicts[v]++
			}
		}
		for _, ch := range d.History {
			agg.recent = keepNewest(agg.recent, RecentChange{Digest: d.Digest, Upstream: d.Upstream, Repository: d.Repository, VerdictChange: ch})
		}
		return true
	})
	if err != nil {
		return overviewAggregates{}, fmt.Errorf("count verdicts: %w", err)
	}
	vulns := map[string]*VulnCount{}
	n = 0
	err = h.Scans.ScanFindings(ctx, func(rec store.ScanFindings) bool {
		if n++; n > maxOverviewRecords {
			agg.truncated = true
			return false
		}
		seen := map[string]bool{} // an id found in several packages counts once per image
		for _, f := range rec.Findings {
			if seen[f.ID] {
				continue
			}
			seen[f.ID] = true
			v, ok := vulns[f.ID]
			if !ok {
				if len(vulns) == maxTrackedVulns {
					agg.truncated = true
					continue
				}
				v = &VulnCount{ID: f.ID, Severity: f.Severity}
				vulns[f.ID] = v
			}
			v.Images++
			if vulndb.SeverityRank(f.Severity) > vulndb.SeverityRank(v.Severity) {
				v.Severity = f.Severity
			}
		}
		return true
	})
	if err != nil {
		return overviewAggregates{}, fmt.Errorf("count vulnerabilities: %w", err)
	}
	for _, v := range vulns {
		agg.top = append(agg.top, *v)
	}
	slices.SortFunc(agg.top, func(a, b VulnCount) int {
		return cmp.Or(cmp.Compare(b.Images, a.Images),
			cmp.Compare(vulndb.SeverityRank(b.Severity), vulndb.SeverityRank(a.Severity)),
			cmp.Compare(a.ID, b.ID))
	})
	agg.top = agg.top[:min(len(agg.top), maxTopVulns)]
	agg.at = time.Now()
	return agg, nil
}

// keepNewest inserts c into recent (newest first), keeping maxRecent.
func keepNewest(recent []RecentChange, c RecentChange) []RecentChange {
	i, _ := slices.BinarySearchFunc(recent, c, func(e, t RecentChange) int { return t.At.Compare(e.At) })
	if i == maxRecent {
		return recent
	}
	recent = slices.Insert(recent, i, c)
	return recent[:min(len(recent), maxRecent)]
}

// blockedLast24h reads the shared blocked-pull counter (concurrent
// requests share one read), most first.
func (h *Handler) blockedLast24h(ctx context.Context) ([]ReasonCount, error) {
	out := []ReasonCount{}
	if h.Counters == nil {
		return out, nil
	}
	ch := h.overview.flight.DoChan("blocked", func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), overviewWalkTimeout)
		defer cancel()
		return h.Counters.Sum(rctx, BlockedPullsCounter, time.Now().Add(-24*time.Hour))
	})
	var sums map[string]int64
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return nil, fmt.Errorf("read blocked pulls: %w", res.Err)
		}
		sums = res.Val.(map[string]int64)
	}
	for code, n := range sums {
		if n > 0 {
			out = append(out, ReasonCount{Code: code, Count: n})
		}
	}
	slices.SortFunc(out, func(a, b ReasonCount) int { return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Code, b.Code)) })
	return out, nil
}

// getOverview answers GET /api/v1/overview.
func (h *Handler) getOverview(w http.ResponseWriter, req request) {
	ov, err := h.Overview(req.r.Context())
	if err != nil {
		h.internalError(w, req, "compute overview", err)
		return
	}
	writeJSON(w, http.StatusOK, ov)
}
