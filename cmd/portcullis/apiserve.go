package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/proxy/auth"
)

// apiProtection is what guards the status API and /metrics: its tokens
// when api.tokens_file is set (htpasswd users are for pulls then; a
// token's name is the user the access rules see when the API resolves a
// reference), else the htpasswd credentials when auth is on.
func apiProtection(c config.API, access *auth.Auth, log *slog.Logger) (func(http.Handler) http.Handler, error) {
	if c.TokensFile != "" {
		tokens, err := api.LoadTokens(c.TokensFile)
		if err != nil {
			return nil, err
		}
		tokens.Logger = log
		if access != nil {
			tokens.AsUser = auth.AsUser
		}
		log.Info("api: tokens loaded", "file", c.TokensFile, "tokens", tokens.Len())
		return tokens.Wrap, nil
	}
	if access != nil {
		return access.API, nil
	}
	return func(h http.Handler) http.Handler { return h }, nil
}

// apiServer serves the status API on api.listen, apart from the pull port.
type apiServer struct {
	srv  *http.Server
	errc chan error
}

// startAPIServer listens on cfg.API.Listen.
// metricsHandler (nil: metrics are off) and uiHandler (nil: the dashboard
// is off) are served there too.
func startAPIServer(cfg config.Config, apiHandler, metricsHandler, uiHandler http.Handler, log *slog.Logger) (*apiServer, error) {
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/api/"):
			apiHandler.ServeHTTP(w, r)
		case r.URL.Path == "/metrics" && metricsHandler != nil:
			metricsHandler.ServeHTTP(w, r)
		case uiHandler != nil && uiPath(r.URL.Path):
			serveUI(uiHandler, w, r)
		default:
			http.NotFound(w, r)
		}
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on api.listen: %w", err)
	}
	if cfg.API.TokensFile == "" && cfg.Auth.Htpasswd == "" && !loopbackOnly(ln.Addr().String()) {
		log.Warn("open api: api.listen is beyond loopback without api.tokens_file or auth.htpasswd; anyone who can reach it can read verdicts and the event stream and queue scans",
			"addr", ln.Addr().String())
	}
	log.Info("portcullis api listening", "addr", ln.Addr().String(), "tls", cfg.TLS.CertFile != "", "tokens", cfg.API.TokensFile != "")
	s := &apiServer{srv: srv, errc: make(chan error, 1)}
	go func() {
		if cfg.TLS.CertFile != "" {
			s.errc <- srv.ServeTLS(ln, cfg.TLS.CertFile, cfg.TLS.KeyFile)
		} else {
			s.errc <- srv.Serve(ln)
		}
	}()
	return s, nil
}

// shutdown finishes requests in flight until ctx ends, then closes. Event
// streams end when the pull port's shutdown closes the handler's Closing.
func (s *apiServer) shutdown(ctx context.Context) {
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
}
