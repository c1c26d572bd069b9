// Package ui serves the dashboard under /ui/: server-rendered pages
// (html/template) over the same read methods as the status API, a small
// stylesheet and script from the binary itself (no CDN: it works
// air-gapped), behind the API's tokens when they are set.
package ui

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/pipeline"
	"github.com/portcullis/portcullis/policy"
)

// Policy is what the policy page reads: the policy in force, when it was
// loaded, and what each rule would decide about a stored result.
type Policy interface {
	Policy() *policy.Policy
	PolicyLoadedAt() time.Time
	WhatIf(ctx context.Context, upstream, repo, digest string) ([]pipeline.RuleOutcome, error)
}

// Options wires a Handler.
type Options struct {
	// API answers every read (the same code as the JSON endpoints), and
	// queues the scans the admin form asks for.
	API    *api.Handler
	Policy Policy
	// Tokens: set, a browser logs in with a token (session cookie), a
	// script sends it as a bearer header; nil: the pages are open (or
	// behind Protect).
	Tokens *api.Tokens
	// Protect guards the pages when Tokens is nil (the htpasswd check of
	// the API); nil: open.
	Protect func(http.Handler) http.Handler
	// SecureCookies marks the session cookie Secure (served over TLS).
	SecureCookies bool
	// PublicURL is the mirror's address in the cosign command shown
	// (empty: the host the browser used).
	PublicURL string
	// Signing says published verdicts are signed (signing_key is set), so
	// the cosign command has something to verify.
	Signing bool
	// SessionKey signs session cookies and CSRF values; nil: a random key
	// (a restart logs everybody out).
	SessionKey []byte
	Logger     *slog.Logger
	// Now is the clock of session expiry; nil: time.Now.
	Now func() time.Time
}

// Handler serves /ui/.
type Handler struct {
	o      Options
	log    *slog.Logger
	now    func() time.Time
	keys   sessionKeys
	pages  *pages
	static *staticFiles
	// guarded is the part behind Protect (without tokens).
	guarded http.Handler
	// overview reads the overview's figures: the API's Overview (a
	// field so tests can show figures the store cannot make up).
	overview func(context.Context) (api.Overview, error)
}

// New builds the dashboard's handler.
func New(o Options) (*Handler, error) {
	h := &Handler{o: o, log: o.Logger, now: o.Now}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.now == nil {
		h.now = time.Now
	}
	var err error
	if h.keys, err = newSessionKeys(o.SessionKey); err != nil {
		return nil, err
	}
	if h.pages, err = parsePages(); err != nil {
		return nil, err
	}
	if h.static, err = loadStatic(); err != nil {
		return nil, err
	}
	h.overview = o.API.Overview
	h.guarded = http.HandlerFunc(h.serveAuthorized)
	if o.Tokens == nil && o.Protect != nil {
		h.guarded = o.Protect(h.guarded)
	}
	return h, nil
}

// contentSecurityPolicy allows nothing inline and nothing from elsewhere.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// securityHeaders go on every response, errors and assets included.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
}

// ServeHTTP routes /ui/ (routes lists every page).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	securityHeaders(w.Header())
	rt, param, ok := matchRoute(r.URL.Path)
	if !ok {
		h.errorPage(w, r, nil, http.StatusNotFound, "No such page", "There is no page at this address.")
		return
	}
	if !slices.Contains(rt.methods, r.Method) {
		w.Header().Set("Allow", strings.Join(rt.methods, ", "))
		h.errorPage(w, r, nil, http.StatusMethodNotAllowed, "Method not allowed", "This page answers "+strings.Join(rt.methods, " and ")+" only.")
		return
	}
	switch rt.name {
	case routeStatic: // no secret in them: the login page needs its stylesheet
		h.static.serve(w, r, param)
		return
	case routeLogin, routeLogout:
		if h.o.Tokens == nil {
			h.errorPage(w, r, nil, http.StatusNotFound, "No such page", "Logging in is only needed when api.tokens_file is set; these pages are open.")
			return
		}
		if rt.name == routeLogin {
			h.login(w, r)
		} else {
			h.logout(w, r)
		}
		return
	}
	h.guarded.ServeHTTP(w, r)
}

// serveAuthorized finds who is asking, refuses who may not, then serves.
func (h *Handler) serveAuthorized(w http.ResponseWriter, r *http.Request) {
	rt, param, _ := matchRoute(r.URL.Path)
	v, ok := h.visitor(w, r, rt)
	if !ok {
		return
	}
	if rt.mutates && !h.mayMutate(w, r, v) {
		return
	}
	ctx := r.Context()
	if v.name != "" && h.o.Tokens.AsUser != nil {
		ctx = h.o.Tokens.AsUser(ctx, v.name)
	}
	r = r.WithContext(ctx)
	switch rt.name {
	case routeOverview:
		h.overviewPage(w, r, v)
	case routeImages:
		h.images(w, r, v)
	case routeImage:
		h.image(w, r, v, param)
	case routeRescan:
		h.rescan(w, r, v, param)
	case routeVulnerability:
		h.vulnerability(w, r, v, param)
	case routePolicy:
		h.policyPage(w, r, v)
	case routeEvents:
		h.events(w, r)
	}
}

// visitor is who is asking: with tokens, the token's name and scopes (from
// the session cookie or a bearer header); without, anybody.
type visitor struct {
	name    string
	admin   bool
	session string // the session cookie's value, for CSRF; "" with a bearer token or without tokens
	bearer  bool
	// loopback: the client connects from this machine.
	loopback bool
}

// visitor authenticates r, or answers (303 to the login page, 401 for the
// event stream and bearer mistakes) and reports false.
func (h *Handler) visitor(w http.ResponseWriter, r *http.Request, rt route) (visitor, bool) {
	v := visitor{loopback: isLoopback(r.RemoteAddr)}
	if h.o.Tokens == nil {
		v.admin = v.loopback
		return v, true
	}
	secret, problem := api.Bearer(r)
	switch {
	case problem != "":
		h.unauthorized(w, r, problem)
		return v, false
	case secret != "":
		name, scopes, ok := h.o.Tokens.Check(secret)
		if !ok {
			h.unauthorized(w, r, "unknown token")
			return v, false
		}
		v.name, v.admin, v.bearer = name, slices.Contains(scopes, api.ScopeAdmin), true
		return v, true
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		if s, err := h.keys.parseSession(c.Value, h.now()); err == nil {
			// The token must still be in the file, and the session has
			// no more than the scopes it has now.
			if scopes, ok := h.o.Tokens.ScopesOf(s.Token); ok {
				v.name, v.admin, v.session = s.Name, s.admin() && slices.Contains(scopes, api.ScopeAdmin), c.Value
				return v, true
			}
		}
		// Expired, tampered with, signed by a previous process or made
		// with a token since taken out of the file: log in again.
		h.clearSession(w)
	}
	if rt.name == routeEvents {
		h.unauthorized(w, r, "log in at /ui/login first")
		return v, false
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.errorPage(w, r, nil, http.StatusForbidden, "Log in first", "This action needs a session: log in at /ui/login.")
		return v, false
	}
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
	return v, false
}

func (h *Handler) unauthorized(w http.ResponseWriter, r *http.Request, why string) {
	h.log.LogAttrs(r.Context(), slog.LevelWarn, "ui request refused", slog.String("method", r.Method),
		slog.String("path", r.URL.Path), slog.String("remote", r.RemoteAddr), slog.String("reason", why))
	w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis-api"`)
	h.errorPage(w, r, nil, http.StatusUnauthorized, "Not logged in", why)
}

// mayMutate checks a POST that changes state: a valid CSRF value, and the
// admin scope (with tokens) or a loopback client (without).
func (h *Handler) mayMutate(w http.ResponseWriter, r *http.Request, v visitor) bool {
	if !v.bearer && !h.validCSRF(r, v) {
		h.errorPage(w, r, &v, http.StatusForbidden, "Refused", "The form's CSRF check failed: reload the page and try again.")
		return false
	}
	if !v.admin {
		msg := "This needs a token with the admin scope."
		if h.o.Tokens == nil {
			msg = "Without api.tokens_file, only a client on this machine (loopback) may change anything."
		}
		h.errorPage(w, r, &v, http.StatusForbidden, "Refused", msg)
		return false
	}
	return true
}

func isLoopback(remoteAddr string) bool {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// events streams the API's event stream itself, so the live overview
// sees exactly what /api/v1/events sends.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath, r2.URL.RawQuery = "/api/v1/events", "", ""
	r2.Header.Del("Authorization") // already checked here; the API handler itself takes none
	h.o.API.ServeHTTP(w, r2)
}
