package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/store"
)

// Rematch matches every stored inventory whose findings came from another
// database version again, without reading any layer. It returns how many
// results changed version.
func (p *Pipeline) Rematch(ctx context.Context) (int, error) {
	if p.o.Matcher == nil {
		return 0, nil
	}
	version := p.o.Matcher.Version()
	// Only digests are collected: memory stays flat however many images
	// are stored, and each record is read again when its turn comes.
	var stale []string
	err := p.o.Store.Scans(ctx, func(r store.ScanRecord) bool {
		if r.State == store.ScanDone && r.DBVersion != version {
			stale = append(stale, r.Digest)
		}
		return true
	})
	if err != nil {
		return 0, fmt.Errorf("list scans: %w", err)
	}
	n := 0
	for _, d := range stale {
		r, err := p.o.Store.Scan(ctx, d)
		if err != nil {
			return n, err
		}
		if r.State != store.ScanDone || r.DBVersion == version {
			continue // changed since the listing
		}
		// Mark first, so readers see the findings are from an older
		// database while they are redone.
		r.Stale = true
		if err := p.o.Store.PutScan(ctx, r); err != nil {
			return n, err
		}
		var inv scanner.Inventory
		if err := json.Unmarshal(r.Inventory, &inv); err != nil {
			return n, fmt.Errorf("stored inventory of %s: %w", r.Digest, err)
		}
		findings, dbVersion, err := p.match(ctx, &inv)
		if err != nil {
			return n, err
		}
		if r.Findings, err = json.Marshal(findings); err != nil {
			return n, err
		}
		r.DBVersion, r.Stale, r.UpdatedAt = dbVersion, false, p.now()
		p.decide(ctx, &r, r.Digest)
		p.forget(digest.Digest(r.Digest))
		if err := p.o.Store.PutScan(ctx, r); err != nil {
			return n, err
		}
		p.noteBlobs(r)
		n++
	}
	return n, nil
}

// WatchDB re-matches stored inventories whenever the database version
// changes (an import or update, in this process or another), checking every
// interval until ctx ends.
func (p *Pipeline) WatchDB(ctx context.Context, interval time.Duration) {
	if p.o.Matcher == nil {
		return
	}
	last := ""
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if v := p.o.Matcher.Version(); v != last {
			n, err := p.Rematch(ctx)
			if err != nil {
				p.log.Error("re-match after database change", "err", err)
			} else {
				last = v
				if n > 0 {
					p.log.Info("re-matched stored inventories", "db_version", v, "images", n)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
