package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/scanner/vulndb"
)

// dbRetryAfter bounds the wait after a failed update: a first run that
// could not download must not stay without a database for a whole
// update_interval because of one network hiccup.
const dbRetryAfter = time.Hour

// dbDownloadTimeout bounds one archive's download.
const dbDownloadTimeout = 30 * time.Minute

// vulnDBSources are the archives the server downloads: osv.dev's, or the
// same layout under vulndb.source_url.
func vulnDBSources(c config.VulnDB) []vulndb.Source {
	if c.SourceURL != "" {
		return vulndb.SourcesAt(c.SourceURL)
	}
	return vulndb.DefaultSources()
}

// dbUpdater keeps the server's vulnerability database fresh: it downloads
// at start when there is none (or the last update is older than every),
// then every interval, with one log line per update.
type dbUpdater struct {
	db      *vulndb.Shared
	sources []vulndb.Source
	every   time.Duration
	dataDir string
	log     *slog.Logger
	client  *http.Client // nil: one with dbDownloadTimeout
}

func (u dbUpdater) run(ctx context.Context) {
	client := u.client
	if client == nil {
		client = &http.Client{Timeout: dbDownloadTimeout}
	}
	wait := u.firstWait(ctx)
	for {
		if wait > 0 {
			u.log.Debug("next vulnerability database update", "in", wait.String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		wait = u.update(ctx, client)
		if ctx.Err() != nil {
			return
		}
	}
}

// firstWait is how long until the first update: none when there is no
// database, else what is left of the interval since the last update (or
// import).
func (u dbUpdater) firstWait(ctx context.Context) time.Duration {
	st, err := u.db.Status(ctx)
	if err != nil || st.Version == "" {
		return 0
	}
	last := st.BuiltAt
	for _, s := range st.Sources {
		if s.CheckedAt.After(last) {
			last = s.CheckedAt
		}
	}
	return max(0, time.Until(last.Add(u.every)))
}

// update runs one update, logs its one line, and says when to run the
// next.
func (u dbUpdater) update(ctx context.Context, client *http.Client) time.Duration {
	started := time.Now()
	st, err := u.db.Update(ctx, u.sources, client, nil)
	if ctx.Err() != nil {
		return 0 // shutting down: nothing to report
	}
	failed := countErrors(err)
	duration := time.Since(started).Round(time.Millisecond).String()
	switch {
	case err == nil:
		u.log.Info("vulnerability database updated", "version", u.db.Version(), "records", st.Records,
			"unchanged_sources", st.Unchanged, "sources", len(u.sources), "duration", duration)
		return u.every
	case failed < len(u.sources) && st.Records+st.Unchanged > 0:
		u.log.Warn("vulnerability database updated; some sources failed", "version", u.db.Version(), "records", st.Records,
			"failed_sources", failed, "sources", len(u.sources), "err", firstError(err), "duration", duration)
	case failed == len(u.sources):
		// Nothing arrived: most likely no way out to the internet. One
		// line, with the way to do it offline.
		u.log.Error("vulnerability database download failed; offline, import OSV archives instead: portcullis db import --data "+u.dataDir+" DIR|all.zip…",
			"failed_sources", failed, "sources", len(u.sources), "err", firstError(err), "retry_in", min(u.every, dbRetryAfter).String(), "duration", duration)
	default:
		u.log.Error("vulnerability database update failed", "err", err, "retry_in", min(u.every, dbRetryAfter).String(), "duration", duration)
	}
	return min(u.every, dbRetryAfter)
}

// countErrors counts the errors Update joined (one per failed source).
func countErrors(err error) int {
	if err == nil {
		return 0
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return len(j.Unwrap())
	}
	return 1
}

// firstError is the first of the joined errors: they usually share a cause,
// and thirteen of them do not make one readable log line.
func firstError(err error) string {
	if j, ok := err.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) > 0 {
		return j.Unwrap()[0].Error()
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

// dbProblem says what is wrong with the vulnerability database for
// /readyz and the start-up warning: missing, or older than maxAge (0: any
// age is fine); "" when nothing is. The status is cached for a few seconds
// by Shared, so probes do not open the file each time.
func dbProblem(ctx context.Context, db *vulndb.Shared, maxAge time.Duration) string {
	st, err := db.Status(ctx)
	switch {
	case err != nil:
		return "vulnerability database unreadable: " + err.Error()
	case st.Version == "":
		return "vulnerability database missing"
	case maxAge > 0 && time.Since(st.BuiltAt) > maxAge:
		return "vulnerability database stale: built " + st.BuiltAt.UTC().Format(time.RFC3339) +
			", older than vulndb.max_age " + maxAge.String()
	}
	return ""
}
