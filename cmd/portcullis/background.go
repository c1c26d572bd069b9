package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/controls"
	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/scanner"
	"github.com/portcullis/portcullis/scanner/badfiles"
	"github.com/portcullis/portcullis/scanner/clamd"
	"github.com/portcullis/portcullis/scanner/vulndb"
	"github.com/portcullis/portcullis/store"
	"github.com/portcullis/portcullis/telemetry"
)

// startBackground opens the vulnerability database, starts the scan
// pipeline and returns the /v2/ handler gated by it (p itself when scanning
// is off) and the status API. stop waits for the background work to end
// after ctx is cancelled.
func startBackground(ctx context.Context, cfg config.Config, p *proxy.Proxy, state store.Store, coord store.Coordination, replica string, closing <-chan struct{}, metrics *serverMetrics, cacheBytes func() int64, tracing *telemetry.Tracing, log *slog.Logger) (registry, status http.Handler, stop func(), dbHealth func(context.Context) string, err error) {
	// Shared: the server holds the database only while matching, so
	// 'portcullis db import' works while it runs.
	db := vulndb.NewShared(filepath.Join(cfg.DataDir, "vulndb"))
	dbHealth = func(ctx context.Context) string { return dbProblem(ctx, db, time.Duration(cfg.VulnDB.MaxAge)) }
	if problem := dbHealth(ctx); problem != "" {
		log.Warn(problem+"; images are not checked for vulnerabilities until one is in place",
			"update_interval", time.Duration(cfg.VulnDB.UpdateInterval).String(),
			"offline", "portcullis db import --data "+cfg.DataDir+" DIR|all.zip…")
	}
	if err := metrics.observe(cacheBytes, coord.Queue, db); err != nil {
		return nil, nil, nil, nil, err
	}
	pol, err := loadPolicy(cfg.Policy)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	log.Info("policy loaded", "file", cfg.Policy, "version", pol.Version(), "rules", len(pol.Rules))
	signer, err := loadSigningKey(cfg)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	badFiles, err := knownBadFiles(cfg, db, metrics)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	scanOpts := []scanner.Option{scanner.WithLogger(log), scanner.WithSecretsMaxFile(int64(cfg.Scan.SecretsMaxFile)),
		scanner.WithFileInspector(badFiles)}
	if layers, ok := state.(scanner.LayerCache); ok {
		// Both stores keep layer states: a new tag of a base image, on any
		// replica, costs only its own layers.
		scanOpts = append(scanOpts, scanner.WithLayerCache(layers))
	}
	// The operators' quarantines and exceptions, complete in memory and
	// kept current by view.Run; their expiries go to the audit log through
	// the pipeline, which also announces them.
	var pl *pipeline.Pipeline
	view := controls.New(state, controls.Options{Logger: log, Replica: replica,
		Audit: func(ctx context.Context, rec store.AuditRecord) error { _, err := pl.Audit(ctx, rec); return err }})
	if err := view.Refresh(ctx); err != nil {
		// Serving without the quarantines in force would open them.
		return nil, nil, nil, nil, err
	}
	pl = pipeline.New(pipeline.Options{
		Controls:       view,
		Policy:         pol,
		Registry:       p,
		Artifacts:      state,
		Signer:         signer,
		Store:          state,
		Queue:          coord.Queue,
		Publications:   coord.Publications,
		Events:         coord.Events,
		Leases:         coord.Leases,
		Consumer:       replica,
		Images:         p,
		Scanner:        scanner.New(scanOpts...),
		ScannerVersion: scanner.Version,
		Matcher:        db,
		Workers:        cfg.Scan.Workers,
		ScanTimeout:    time.Duration(cfg.Scan.Timeout),
		DBMaxAge:       time.Duration(cfg.VulnDB.MaxAge),
		AllPlatforms:   cfg.Scan.AllPlatforms,
		Logger:         log,
		Metrics:        metrics.pipeline,
		Tracer:         tracing.Tracer("portcullis/pipeline"),
		// The re-match after a database update yields to pulls.
		InFlight: p.InFlight,
	})
	alerter, err := newAlerter(cfg, coord.Leases, replica, metrics.meter(), log)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	registry = p
	bg, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { view.Run(bg) })
	// Curation answers from the policy in force, which reloads swap.
	p.SetCuration(pl)
	if t := p.CurationTally(); t != nil {
		wg.Go(func() { t.Run(bg, curationSummaryEvery, recordCurationRefusals(pl, log)) })
	}
	if alerter != nil {
		// Every replica sees every event; the alerter's leases make one
		// of them send each alert.
		events, unsubscribe := pl.Subscribe()
		wg.Go(func() {
			defer unsubscribe()
			alerter.Run(bg, events)
		})
	}
	if !cfg.Scan.Enabled {
		// No policy judges what a mirror that does not scan serves, but an
		// operator's quarantine still refuses it.
		registry = p.WithGate(pipeline.QuarantineGate(view))
	}
	if cfg.Scan.Enabled {
		registry = p.WithGate(pl)
		wg.Go(func() {
			if err := pl.Run(bg); err != nil {
				log.Error("scan pipeline", "err", err)
			}
		})
		wg.Go(func() { pl.WatchDB(bg, 5*time.Second) })
		wg.Go(func() { watchPolicy(bg, cfg.Policy, pl, policyCheckInterval, log) })
	}
	if every := time.Duration(cfg.VulnDB.UpdateInterval); every > 0 {
		u := dbUpdater{db: db, sources: vulnDBSources(cfg.VulnDB), every: every, dataDir: cfg.DataDir, log: log}
		wg.Go(func() { u.run(bg) })
	}
	stop = func() {
		cancel()
		wg.Wait()
	}
	status = &api.Handler{Scans: state, Resolver: p, Queue: pl, Events: pl, Closing: closing, DBVersion: pl.DBVersion, Logger: log, Controls: view}
	var admissionGate proxy.Gate
	if cfg.Scan.Enabled {
		admissionGate = pl
	}
	status.(*api.Handler).Admission = admissionOptions(cfg.API.Admission, admissionGate)
	wireOverview(status.(*api.Handler), coord, p, cacheBytes, db, time.Duration(cfg.VulnDB.MaxAge))
	wireOperators(status.(*api.Handler), state, pl, cfg)
	return registry, status, stop, dbHealth, nil
}

// loadPolicy reads the policy file, or gives the default policy.
func loadPolicy(path string) (*policy.Policy, error) {
	if path == "" {
		return policy.Default(), nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	pol, err := policy.Parse(raw)
	if err != nil {
		if nerr := notAPolicy(path, raw); nerr != nil {
			return nil, nerr
		}
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	// The VEX documents it names are read with it, at each reload.
	if err := pol.LoadVEX(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return pol, nil
}

// loadSigningKey reads the cosign key that signs published artifacts.
func loadSigningKey(cfg config.Config) (signature.SignerVerifier, error) {
	if cfg.SigningKey == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(cfg.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("read signing_key: %w", err)
	}
	env := cmp.Or(cfg.SigningKeyPasswordEnv, "COSIGN_PASSWORD")
	sv, err := cosign.LoadPrivateKey(pem, []byte(os.Getenv(env)), nil)
	if err != nil {
		return nil, fmt.Errorf("load signing_key %s (password from $%s): %w", cfg.SigningKey, env, err)
	}
	return sv, nil
}

// wireOverview gives the status API what its overview reads besides the
// store: the shared counters, this replica's cache, the database.
func wireOverview(h *api.Handler, coord store.Coordination, p *proxy.Proxy, cacheBytes func() int64, db *vulndb.Shared, maxAge time.Duration) {
	h.Counters = coord.Counters
	h.CacheBytes = cacheBytes
	h.CacheCounts = p.CacheCounts
	h.DBStatus = func(ctx context.Context) (api.DBStatus, error) {
		st, err := db.Status(ctx)
		return api.DBStatus{Version: st.Version, BuiltAt: st.BuiltAt}, err
	}
	h.DBMaxAge = maxAge
}

// knownBadFiles checks the regular files of every scanned layer against
// the database's ClamAV hash signatures and, with scan.clamd set, against
// that clamd (one connection per scan worker at most), counting the files
// too large to send it in metrics.
func knownBadFiles(cfg config.Config, db *vulndb.Shared, metrics *serverMetrics) (scanner.FileInspector, error) {
	var cl *clamd.Client
	if cfg.Scan.Clamd != "" {
		c, err := clamd.New(cfg.Scan.Clamd, clamd.Options{Conns: cfg.Scan.Workers, MaxFile: int64(cfg.Scan.ClamdMaxFile)})
		if err != nil {
			return nil, fmt.Errorf("scan.clamd: %w", err)
		}
		cl = c
	}
	in := badfiles.NewInspector(db, int64(cfg.Scan.HashMaxFile), cl, int64(cfg.Scan.ClamdMaxFile))
	if cl != nil {
		if err := metrics.observeClamdSkipped(in.Skipped); err != nil {
			return nil, err
		}
	}
	return in.ForWalk(), nil
}
