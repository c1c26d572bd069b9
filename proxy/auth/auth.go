// Package auth decides who may pull what: Basic authentication against an
// htpasswd file of bcrypt entries, and access rules matching users,
// upstreams and repositories. Its middleware authenticates /v2/ and /api/
// requests and puts the caller into the request context; the proxy asks
// Allow after routing (it implements proxy.Access).
package auth

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/proxy"
)

// Challenge is the WWW-Authenticate value of every 401.
const Challenge = `Basic realm="portcullis"`

// Config is the auth section of the configuration, resolved.
type Config struct {
	// Htpasswd is the htpasswd file (bcrypt entries); empty: no
	// credentials exist and every request is anonymous.
	Htpasswd string
	// Anonymous allows pulls without credentials (subject to Access as the
	// user "anonymous"). Meaningful only with Htpasswd.
	Anonymous bool
	// Access rules, first match wins; a request no rule matches is
	// denied. Nil: every authenticated (or allowed anonymous) caller may
	// pull everything.
	Access []Rule
	Logger *slog.Logger
}

// Auth authenticates requests and applies the access rules.
type Auth struct {
	verifier  *verifier // nil without htpasswd
	anonymous bool
	rules     []Rule
	log       *slog.Logger
}

// New reads the htpasswd file and checks the rules.
func New(c Config) (*Auth, error) {
	if err := checkRules(c.Access); err != nil {
		return nil, err
	}
	a := &Auth{anonymous: c.Anonymous || c.Htpasswd == "", rules: c.Access, log: cmp.Or(c.Logger, slog.Default())}
	if c.Htpasswd != "" {
		file, err := loadHtpasswd(c.Htpasswd, time.Now, a.reported)
		if err != nil {
			return nil, err
		}
		if a.verifier, err = newVerifier(file); err != nil {
			return nil, err
		}
		a.log.Info("auth: htpasswd loaded", "file", c.Htpasswd, "users", len(file.users),
			"anonymous", a.anonymous, "access_rules", len(c.Access))
	}
	return a, nil
}

// reported logs a reload of the htpasswd file.
func (a *Auth) reported(users int, err error) {
	if err != nil {
		a.log.Error("auth: htpasswd changed but cannot be used", "err", err)
		return
	}
	a.log.Info("auth: htpasswd reloaded", "users", users)
}

// caller is who sent a request, as the middleware established it.
type caller struct {
	user      string
	anonymous bool
}

type callerKey struct{}

func withCaller(ctx context.Context, c caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// AsUser makes user the caller of ctx, authenticated by other means than
// htpasswd (an API token): the access rules apply to it by that name.
func AsUser(ctx context.Context, user string) context.Context {
	return withCaller(ctx, caller{user: user})
}

// callerOf returns the request's caller; a context the middleware never saw
// (a call from inside Portcullis) counts as anonymous, so a missing wrapper
// can only deny more.
func callerOf(ctx context.Context) caller {
	if c, ok := ctx.Value(callerKey{}).(caller); ok {
		return c
	}
	return caller{user: Anonymous, anonymous: true}
}

// User names the caller for the request log.
func (a *Auth) User(ctx context.Context) string { return callerOf(ctx).user }

// Allow applies the access rules to the caller of ctx; it implements
// proxy.Access.
func (a *Auth) Allow(ctx context.Context, upstream, repo string) error {
	c := callerOf(ctx)
	challenge := a.verifier != nil // credentials could help
	if c.anonymous && !a.anonymous {
		return &proxy.AccessError{Unauthenticated: true, Challenge: Challenge,
			Message: fmt.Sprintf("authentication required to pull %s/%s", upstream, repo)}
	}
	if a.rules == nil {
		return nil
	}
	rule := firstMatch(a.rules, c.user, upstream, repo)
	if rule >= 0 {
		a.log.Debug("access allowed", "user", c.user, "upstream", upstream, "repo", repo, "rule", rule)
		return nil
	}
	level := slog.LevelWarn
	if c.anonymous {
		level = slog.LevelInfo
	}
	a.log.Log(ctx, level, "access denied", "user", c.user, "upstream", upstream, "repo", repo,
		"rule", "none of the auth.access rules matches")
	if c.anonymous && challenge {
		return &proxy.AccessError{Unauthenticated: true, Challenge: Challenge,
			Message: fmt.Sprintf("anonymous pulls of %s/%s are not allowed: log in", upstream, repo)}
	}
	return &proxy.AccessError{Message: fmt.Sprintf("user %s may not pull %s/%s", c.user, upstream, repo)}
}

// refusal is why the middleware turned a request away.
type refusal struct {
	status  int
	code    string // OCI error code
	message string
	user    string // claimed user name, if any, for the log
	level   slog.Level
}

// authenticate establishes the caller from the Authorization header.
// requireCredentials refuses anonymous callers.
func (a *Auth) authenticate(r *http.Request, requireCredentials bool) (caller, *refusal) {
	anon := caller{user: Anonymous, anonymous: true}
	if a.verifier == nil { // no htpasswd: nobody has credentials
		return anon, nil
	}
	values := r.Header.Values("Authorization")
	if len(values) > 1 {
		return caller{}, &refusal{http.StatusUnauthorized, "UNAUTHORIZED", "more than one Authorization header", "", slog.LevelWarn}
	}
	if len(values) == 0 {
		if requireCredentials {
			return caller{}, &refusal{http.StatusUnauthorized, "UNAUTHORIZED", "authentication required", Anonymous, slog.LevelInfo}
		}
		return anon, nil
	}
	user, password, err := parseBasic(values[0])
	if errors.Is(err, errEmptyBasic) { // what some clients send when they have no credentials
		if requireCredentials {
			return caller{}, &refusal{http.StatusUnauthorized, "UNAUTHORIZED", "authentication required", Anonymous, slog.LevelInfo}
		}
		return anon, nil
	}
	if err != nil {
		return caller{}, &refusal{http.StatusUnauthorized, "UNAUTHORIZED", err.Error(), "", slog.LevelWarn}
	}
	ok, err := a.verifier.verify(r.Context(), user, password)
	switch {
	case errors.Is(err, errBusy):
		return caller{}, &refusal{http.StatusServiceUnavailable, "UNAVAILABLE", "too many logins being checked; retry shortly", user, slog.LevelWarn}
	case err != nil: // the client left
		return caller{}, &refusal{http.StatusServiceUnavailable, "UNAVAILABLE", "request cancelled", user, slog.LevelDebug}
	case !ok:
		return caller{}, &refusal{http.StatusUnauthorized, "UNAUTHORIZED", "invalid user name or password", user, slog.LevelWarn}
	}
	return caller{user: user}, nil
}

// Registry wraps the /v2/ handler. With an htpasswd file, requests without
// credentials are refused unless anonymous pulls are allowed, and the bare
// /v2/ ping always answers 401 to them: clients (docker, crane, podman)
// send the credentials they hold only after a challenge there, so a 200
// would keep logged-in users anonymous.
func (a *Auth) Registry(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ping := r.URL.Path == "/v2" || r.URL.Path == "/v2/"
		c, ref := a.authenticate(r, !a.anonymous || ping)
		if ref != nil {
			if ping && ref.user == Anonymous {
				ref.level = slog.LevelDebug // every client's first request
			}
			a.refuse(w, r, ref, func() { proxy.WriteError(w, r, ref.status, ref.code, ref.message) })
			return
		}
		next.ServeHTTP(w, r.WithContext(withCaller(r.Context(), c)))
	})
}

// API wraps the status API: with an htpasswd file every request needs valid
// credentials, anonymous pulls or not (the event stream shows every pull).
func (a *Auth) API(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ref := a.authenticate(r, true)
		if ref != nil {
			a.refuse(w, r, ref, func() {
				// The status API's error shape: code and message ("error" for older clients).
				body, _ := json.Marshal(map[string]string{"code": ref.code, "message": ref.message, "error": ref.message})
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(ref.status)
				_, _ = w.Write(append(body, '\n'))
			})
			return
		}
		next.ServeHTTP(w, r.WithContext(withCaller(r.Context(), c)))
	})
}

// refuse logs the refusal (with the claimed user, never a password) and
// writes it.
func (a *Auth) refuse(w http.ResponseWriter, r *http.Request, ref *refusal, write func()) {
	a.log.Log(r.Context(), ref.level, "request refused",
		"method", r.Method, "path", r.URL.Path, "status", ref.status, "user", ref.user,
		"remote", r.RemoteAddr, "reason", ref.message)
	if ref.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", Challenge)
	}
	if ref.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	write()
}
