package main

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/proxy/auth"
	"github.com/portcullis/portcullis/ui"
)

// newUIHandler builds the dashboard over the status API's handler (status,
// before apiProtection wraps it) and the pipeline behind it; nil when
// ui.enabled is off. With api.tokens_file the dashboard checks the tokens
// itself (a login form for browsers, bearer headers for scripts); else the
// htpasswd check of the API guards it, when auth is on.
func newUIHandler(cfg config.Config, status http.Handler, access *auth.Auth, log *slog.Logger) (http.Handler, error) {
	if !cfg.UI.Enabled {
		return nil, nil
	}
	apiHandler, ok := status.(*api.Handler)
	if !ok {
		return nil, errors.New("ui: the status handler is not the API's")
	}
	// The API handler's queue and event source are the pipeline.
	pl, ok := apiHandler.Events.(*pipeline.Pipeline)
	if !ok {
		return nil, errors.New("ui: the status API has no pipeline behind it")
	}
	o := ui.Options{API: apiHandler, Policy: pl, SecureCookies: cfg.TLS.CertFile != "", PublicURL: cfg.PublicURL,
		Signing: cfg.SigningKey != "", Logger: log}
	if cfg.API.TokensFile != "" {
		tokens, err := api.LoadTokens(cfg.API.TokensFile)
		if err != nil {
			return nil, err
		}
		tokens.Logger = log
		if access != nil {
			tokens.AsUser = auth.AsUser
		}
		o.Tokens = tokens
	} else if access != nil {
		o.Protect = access.API
	}
	keyFrom := "per process: a restart logs everybody out"
	if f := cfg.UI.SessionKeyFile; f != "" {
		key, err := readSessionKey(f)
		if err != nil {
			return nil, err
		}
		o.SessionKey, keyFrom = key, f
	}
	h, err := ui.New(o)
	if err != nil {
		return nil, err
	}
	log.Info("dashboard at /ui/", "login", o.Tokens != nil, "session_key", keyFrom)
	return h, nil
}

// minSessionKey is the shortest session key file taken: 256 bits, as
// `openssl rand -base64 32` (44 characters) gives.
const minSessionKey = 32

// readSessionKey reads ui.session_key_file: its bytes, surrounding white
// space (a trailing newline) left out.
func readSessionKey(path string) ([]byte, error) {
	raw, err := readBounded(path, 4096)
	if err != nil {
		return nil, fmt.Errorf("ui.session_key_file: %w", err)
	}
	key := bytes.TrimSpace(raw)
	if len(key) < minSessionKey {
		return nil, fmt.Errorf("ui.session_key_file %s: %d bytes, want at least %d (e.g. openssl rand -base64 32)", path, len(key), minSessionKey)
	}
	return key, nil
}

// uiPath reports whether path is the dashboard's.
func uiPath(path string) bool {
	return path == "/ui" || strings.HasPrefix(path, "/ui/")
}

// serveUI serves the dashboard, sending /ui to /ui/.
func serveUI(h http.Handler, w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ui" {
		http.Redirect(w, r, "/ui/", http.StatusMovedPermanently)
		return
	}
	h.ServeHTTP(w, r)
}
