package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/policy"
	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/proxy/cache"
	"github.com/portcullis/portcullis/proxy/upstream"
	"github.com/portcullis/portcullis/store"
)

var errUsage = errors.New("usage")

// upstreamFlags collects repeated --upstream NAME=URL flags.
type upstreamFlags []config.Upstream

func (u *upstreamFlags) String() string { return fmt.Sprint(len(*u), " upstreams") }

func (u *upstreamFlags) Set(v string) error {
	name, url, ok := strings.Cut(v, "=")
	if !ok || name == "" || url == "" {
		return fmt.Errorf("want NAME=URL, e.g. ghcr.io=https://ghcr.io")
	}
	*u = append(*u, config.Upstream{Name: name, URL: url})
	return nil
}

func serve(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", os.Getenv("PORTCULLIS_CONFIG"), "YAML configuration `file` (also $PORTCULLIS_CONFIG)")
	listen := fs.String("listen", "", "`address` to listen on (default 127.0.0.1:5000)")
	dataDir := fs.String("data", "", "data `directory` for the cache and state (default ./portcullis-data)")
	defaultUpstream := fs.String("default-upstream", "", "upstream `name` for requests that name no registry (default docker.io when configured)")
	vulndbSource := fs.String("vulndb-source-url", os.Getenv("PORTCULLIS_VULNDB_SOURCE_URL"), "download the OSV exports (<ecosystem>/all.zip) from this `URL` instead of osv.dev; overrides vulndb.source_url (also $PORTCULLIS_VULNDB_SOURCE_URL)")
	var upstreams upstreamFlags
	fs.Var(&upstreams, "upstream", "upstream registry as `NAME=URL`; repeatable; replaces the configured list")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected arguments %q", fs.Args())
	}

	cfg := config.Default()
	if *configPath != "" {
		var err error
		if cfg, err = config.Load(*configPath); err != nil {
			return err
		}
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *dataDir != "" {
		cfg.DataDir = *dataDir
	}
	if len(upstreams) > 0 {
		cfg.Upstreams = upstreams
	}
	if *defaultUpstream != "" {
		cfg.DefaultUpstream = *defaultUpstream
	}
	if *vulndbSource != "" {
		cfg.VulnDB.SourceURL = *vulndbSource
	}
	if err := cfg.Finish(); err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	useScalibrLogger(log)
	return runServer(ctx, cfg, log)
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationInSeconds}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// durationInSeconds writes every duration in a log line as seconds with
// the unit ("1.234s"), the same in JSON and text: slog's JSON handler would
// write bare nanoseconds, which nobody reads right.
func durationInSeconds(_ []string, a slog.Attr) slog.Attr {
	d, ok := time.Duration(0), false
	switch a.Value.Kind() {
	case slog.KindDuration:
		d, ok = a.Value.Duration(), true
	case slog.KindAny:
		var cd config.Duration
		if cd, ok = a.Value.Any().(config.Duration); ok {
			d = time.Duration(cd)
		}
	}
	if ok {
		a.Value = slog.StringValue(strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + "s")
	}
	return a
}

// tagTTL turns the configured tag_ttl into the proxy's: unset is the
// default, an explicit 0 revalidates every tag request.
func tagTTL(u config.Upstream) time.Duration {
	switch {
	case u.TagTTL == nil:
		return proxy.DefaultTagTTL
	case *u.TagTTL == 0:
		return proxy.RevalidateTags
	}
	return time.Duration(*u.TagTTL)
}

// blockedPullsFlush is how often a replica adds the pulls it refused to
// the shared counters (the overview's "blocked in the last 24 h").
const blockedPullsFlush = 2 * time.Second

func runServer(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	state, err := openState(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer state.Close()
	coord, err := coordination(state)
	if err != nil {
		return err
	}
	replica := replicaName()
	metrics, err := newServerMetrics(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer metrics.shutdown(log)
	tracing, stopTracing, err := startTracing(ctx, log)
	if err != nil {
		return err
	}
	defer stopTracing() // runs last: after the requests and background work
	fetcherOpts := []cache.FetcherOption{cache.WithTracer(tracing.Tracer("portcullis/proxy/cache"))}
	var leases cache.Leases
	if cfg.Store.Driver == config.StoreRedis {
		// Replicas share the state: they take turns downloading.
		leases = coord.Leases
		fetcherOpts = append(fetcherOpts, cache.WithLeases(leases, replica))
	}
	fetcherOpts = append(fetcherOpts, cache.WithMetrics(metrics.cache))
	content, err := cache.Open(ctx, cache.Config{
		Driver:     cfg.Storage.Driver,
		Parameters: cfg.Storage.Parameters,
		SpoolDir:   filepath.Join(cfg.DataDir, "spool"),
		MaxBytes:   int64(cfg.Cache.MaxBytes),
		Logger:     log,

		MaxBlobSize: int64(cfg.Cache.MaxBlobSize),
		Metrics:     metrics.cache,
	})
	if err != nil {
		return err
	}
	access, err := newAuth(cfg.Auth, log)
	if err != nil {
		return err
	}
	var ups []proxy.Upstream
	for _, u := range cfg.Upstreams {
		password, err := u.Password()
		if err != nil {
			return err
		}
		um, err := metrics.upstream(u.Name)
		if err != nil {
			return err
		}
		client, err := upstream.New(upstream.Config{
			Name: u.Name, URL: u.URL, Username: u.Username, Password: password,
			CAFile: u.CAFile, Insecure: u.Insecure, Timeout: time.Duration(u.Timeout), Retries: u.Retries,
			Metrics: um,
			Tracer:  tracing.Tracer("portcullis/proxy/upstream"),
		})
		if err != nil {
			return err
		}
		ups = append(ups, proxy.Upstream{Client: client, TagTTL: tagTTL(u)})
	}
	// Blocked pulls are counted in memory and added to the shared counters
	// every few seconds: a flood of refused pulls is not a write storm.
	blockedPulls := store.NewTally(coord.Counters, api.BlockedPullsCounter, policy.ReasonCodes(), log)
	tallyCtx, stopTally := context.WithCancel(context.WithoutCancel(ctx))
	tallyDone := make(chan struct{})
	go func() { blockedPulls.Run(tallyCtx, blockedPullsFlush); close(tallyDone) }()
	defer func() { stopTally(); <-tallyDone }() // after the server stopped serving
	opts := proxy.Options{
		Upstreams:       ups,
		DefaultUpstream: cfg.DefaultUpstream,
		Cache:           content,
		Fetcher:         cache.NewFetcher(content, time.Duration(cfg.Cache.FetchTimeout), time.Duration(cfg.Cache.IdleTimeout), log, fetcherOpts...),
		State:           state,
		Logger:          log,
		GateBlobs:       cfg.GateBlobs,
		PublicURL:       cfg.PublicURL,
		Local:           state,
		RequireBlobLink: cfg.Auth.Enabled(),
		Leases:          leases,
		Replica:         replica,
		Metrics:         metrics.proxy,
		BlockedPulls:    blockedPulls,
		CurationTally:   proxy.NewCurationTally(0),
		Tracer:          tracing.Tracer("portcullis/proxy"),
	}
	if access != nil { // a nil *auth.Auth in the interface would not be nil
		opts.Access = access
	}
	p, err := proxy.New(opts)
	if err != nil {
		return err
	}
	closing := make(chan struct{})
	registry, apiHandler, stopBackground, dbHealth, err := startBackground(ctx, cfg, p, state, coord, replica, closing, metrics, content.Bytes, tracing, log)
	if err != nil {
		return err
	}
	defer stopBackground()

	if access != nil {
		registry = access.Registry(registry)
	}
	wireOperatorUser(apiHandler, access)
	protect, err := apiProtection(cfg.API, access, log)
	if err != nil {
		return err
	}
	uiHandler, err := newUIHandler(cfg, apiHandler, access, log)
	if err != nil {
		return err
	}
	apiHandler = protect(apiHandler)
	metricsHandler := metrics.handler()
	if metricsHandler != nil {
		metricsHandler = protect(metricsHandler)
	}
	var ready atomic.Bool
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2" || strings.HasPrefix(r.URL.Path, "/v2/"):
			registry.ServeHTTP(w, r)
		case strings.HasPrefix(r.URL.Path, "/api/") && cfg.API.Listen == "": // else on its own port
			apiHandler.ServeHTTP(w, r)
		case r.URL.Path == "/metrics" && metricsHandler != nil && cfg.API.Listen == "":
			metricsHandler.ServeHTTP(w, r)
		case uiHandler != nil && uiPath(r.URL.Path) && cfg.API.Listen == "":
			serveUI(uiHandler, w, r)
		case r.URL.Path == "/healthz":
			io.WriteString(w, "ok\n")
		case r.URL.Path == "/readyz":
			if !ready.Load() {
				http.Error(w, "shutting down", http.StatusServiceUnavailable)
				return
			}
			// A replica whose shared state is away still serves what it
			// has cached (verdicts it served, blobs in the storage): it
			// stays ready, and says it is degraded.
			if pinger, ok := state.(interface{ Ping(context.Context) error }); ok {
				pctx, cancel := context.WithTimeout(r.Context(), time.Second)
				err := pinger.Ping(pctx)
				cancel()
				if err != nil {
					fmt.Fprintf(w, "ready; degraded: state store unreachable: %v\n", err)
					return
				}
			}
			// Without a (fresh) database the mirror serves but cannot judge
			// vulnerabilities: ready, and it says so.
			if problem := dbHealth(r.Context()); problem != "" {
				fmt.Fprintf(w, "ready; degraded: %s\n", problem)
				return
			}
			io.WriteString(w, "ready\n")
		default:
			http.NotFound(w, r)
		}
	})
	srv := &http.Server{
		Handler:           metrics.countRequests(handler),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(func() { close(closing) })
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ln = serverListener(ln, cfg.Server.MaxConnections, time.Duration(cfg.Server.WriteIdleTimeout))
	names := make([]string, len(cfg.Upstreams))
	for i, u := range cfg.Upstreams {
		names[i] = u.Name + "=" + u.URL
	}
	log.Info("portcullis listening", "addr", ln.Addr().String(), "tls", cfg.TLS.CertFile != "",
		"data_dir", cfg.DataDir, "storage", cfg.Storage.Driver, "upstreams", names, "default_upstream", cfg.DefaultUpstream,
		"max_connections", cfg.Server.MaxConnections, "write_idle_timeout", time.Duration(cfg.Server.WriteIdleTimeout))
	if cfg.Auth.Htpasswd == "" && !loopbackOnly(ln.Addr().String()) {
		log.Warn("open mirror: listening beyond loopback without auth.htpasswd; anyone who can reach this address can pull every image the upstream credentials can read, trigger scans and read the event stream",
			"addr", ln.Addr().String())
	}

	errc := make(chan error, 1)
	go func() {
		if cfg.TLS.CertFile != "" {
			errc <- srv.ServeTLS(ln, cfg.TLS.CertFile, cfg.TLS.KeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	var apiErrc <-chan error
	if cfg.API.Listen != "" {
		apiSrv, err := startAPIServer(cfg, metrics.countRequests(apiHandler), metricsHandler, uiHandler, log)
		if err != nil {
			srv.Close()
			return err
		}
		apiErrc = apiSrv.errc
		defer func() {
			shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			apiSrv.shutdown(shutdownCtx)
		}()
	}
	ready.Store(true)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case err := <-apiErrc:
		srv.Close()
		return fmt.Errorf("serve api: %w", err)
	case <-ctx.Done():
	}
	ready.Store(false)
	log.Info("shutting down: finishing requests in flight")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown deadline passed; closing remaining connections", "err", err)
		srv.Close()
	}
	return nil
}
