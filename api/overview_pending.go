package api

// TEMPORARY (issue 12): helper "uidata" writes api/overview.go with the
// real Overview; the lead deletes this file when merging that branch.
// Until then the dashboard's overview says plainly that it is not built,
// rather than showing made-up numbers.

import (
	"context"
	"errors"
	"time"

	"github.com/portcullis/portcullis/store"
)

// Overview is what the dashboard's overview shows (ui-design.md, Contract 4).
type Overview struct {
	Verdicts           map[string]int
	BlockedLast24h     []ReasonCount
	TopVulnerabilities []VulnCount
	CacheBytes         int64
	CacheHits          int64
	CacheMisses        int64
	DBVersion          string
	DBBuiltAt          time.Time
	DBState            string
	RecentChanges      []RecentChange
	ComputedAt         time.Time
	Truncated          bool
}

// ReasonCount is how many pulls were refused for one reason code.
type ReasonCount struct {
	Code  string
	Count int64
}

// VulnCount is how many cached images one vulnerability affects.
type VulnCount struct {
	ID, Severity string
	Images       int
}

// RecentChange is a verdict change and the image it is about.
type RecentChange struct {
	Digest, Upstream, Repository string
	store.VerdictChange
}

// Overview is not built yet on this branch.
func (h *Handler) Overview(ctx context.Context) (Overview, error) {
	return Overview{}, errors.New("overview: not built yet")
}
