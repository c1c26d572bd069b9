package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/singleflight"
)

// maxTokens bounds the per-scope token cache; scopes are per repository, and
// a busy mirror sees many.
const maxTokens = 10000

// maxTokenResponse bounds a token endpoint's answer; real tokens are a few
// KiB (Docker Hub's JWTs stay well under 8 KiB).
const maxTokenResponse = 1 << 20

// authenticator implements the registry token flow
// (https://distribution.github.io/distribution/spec/auth/token/) and basic
// auth, learning which one an upstream wants from its 401 challenges. Bearer
// tokens are cached per scope until they expire.
type authenticator struct {
	username, password string
	httpClient         *http.Client
	allowHTTPRealm     bool
	guard              *guard // the address rule for realms on other hosts
	now                func() time.Time

	mu     sync.Mutex
	bearer *challenge // set once the upstream asked for bearer tokens
	basic  bool       // set once the upstream asked for basic auth
	tokens map[string]cachedToken
	flight singleflight.Group
	tracer trace.Tracer // nil: no spans
}

type cachedToken struct {
	value   string
	expires time.Time
}

// apply sets the Authorization header the upstream is known to want.
func (a *authenticator) apply(req *http.Request, scope string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bearer != nil {
		if t, ok := a.tokens[scope]; ok && a.now().Before(t.expires) {
			req.Header.Set("Authorization", "Bearer "+t.value)
		}
		return
	}
	if a.basic && a.username != "" {
		req.SetBasicAuth(a.username, a.password)
	}
}

// handleUnauthorized learns from a 401 response and reports whether the
// request is worth sending again.
func (a *authenticator) handleUnauthorized(ctx context.Context, resp *http.Response, scope string) (bool, error) {
	challenges, err := parseChallenges(resp.Header.Values("WWW-Authenticate"))
	if err != nil {
		return false, err
	}
	for _, c := range challenges {
		switch c.scheme {
		case "bearer":
			if err := a.validateRealm(c.params["realm"]); err != nil {
				return false, err
			}
			a.mu.Lock()
			a.bearer = &c
			delete(a.tokens, scope) // it was refused: expired or revoked
			a.mu.Unlock()
			if _, err := a.token(ctx, c, scope); err != nil {
				return false, err
			}
			return true, nil
		case "basic":
			if a.username == "" {
				return false, nil
			}
			a.mu.Lock()
			already := a.basic
			a.basic = true
			a.mu.Unlock()
			return !already, nil
		}
	}
	return false, nil
}

func (a *authenticator) validateRealm(realm string) error {
	u, err := url.Parse(realm)
	if err != nil || u.Host == "" {
		return fmt.Errorf("token realm %q is not a URL", realm)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && a.allowHTTPRealm:
	default:
		return fmt.Errorf("token realm %q: scheme must be https", realm)
	}
	if a.guard != nil {
		// A realm on a forbidden IP literal is refused before any
		// connection; a name is checked at dial time.
		if err := a.guard.checkLiteral(u.Hostname()); err != nil {
			return fmt.Errorf("token realm %q: %w", realm, err)
		}
	}
	return nil
}

// token returns a token for scope, fetching it once however many requests
// ask at the same time.
func (a *authenticator) token(ctx context.Context, c challenge, scope string) (string, error) {
	v, err, _ := a.flight.Do(scope, func() (any, error) {
		a.mu.Lock()
		t, ok := a.tokens[scope]
		a.mu.Unlock()
		if ok && a.now().Before(t.expires) {
			return t.value, nil
		}
		tctx, span := a.startToken(ctx, c.params["realm"])
		t, err := a.fetchToken(tctx, c, scope)
		endToken(span, err)
		if err != nil {
			return "", err
		}
		a.mu.Lock()
		if len(a.tokens) >= maxTokens {
			a.tokens = map[string]cachedToken{}
		}
		a.tokens[scope] = t
		a.mu.Unlock()
		return t.value, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

func (a *authenticator) fetchToken(ctx context.Context, c challenge, scope string) (cachedToken, error) {
	u, err := url.Parse(c.params["realm"])
	if err != nil {
		return cachedToken{}, fmt.Errorf("token realm: %w", err)
	}
	q := u.Query()
	if s := c.params["service"]; s != "" {
		q.Set("service", s)
	}
	if scope != "" {
		q.Set("scope", scope)
	}
	u.RawQuery = q.Encode()
	// A token request follows no redirect, even when the request that needed
	// the token (a blob GET) may.
	req, err := http.NewRequestWithContext(withoutRedirects(ctx), http.MethodGet, u.String(), nil)
	if err != nil {
		return cachedToken{}, err
	}
	if a.username != "" {
		req.SetBasicAuth(a.username, a.password)
	}
	resp, err := a.httpClient.Do(req)
	if err != nil {
		return cachedToken{}, fmt.Errorf("fetch token from %s: %w", u.Host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse+1))
	if err != nil {
		return cachedToken{}, fmt.Errorf("fetch token from %s: %w", u.Host, err)
	}
	if len(body) > maxTokenResponse {
		return cachedToken{}, fmt.Errorf("token response from %s: %w (limit %d bytes)", u.Host, ErrTooLarge, maxTokenResponse)
	}
	if resp.StatusCode != http.StatusOK {
		return cachedToken{}, &StatusError{Status: resp.StatusCode, Message: "token request refused: " + snippet(body)}
	}
	var tr struct {
		Token       string    `json:"token"`
		AccessToken string    `json:"access_token"`
		ExpiresIn   int       `json:"expires_in"`
		IssuedAt    time.Time `json:"issued_at"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return cachedToken{}, fmt.Errorf("token response from %s: %w", u.Host, err)
	}
	value := tr.Token
	if value == "" {
		value = tr.AccessToken
	}
	if value == "" {
		return cachedToken{}, fmt.Errorf("token response from %s has no token", u.Host)
	}
	// The spec's default lifetime is 60 s. Renew a little early so a token
	// does not expire between our check and the upstream's.
	lifetime := time.Duration(tr.ExpiresIn) * time.Second
	if lifetime <= 0 {
		lifetime = 60 * time.Second
	}
	issued := a.now()
	if !tr.IssuedAt.IsZero() && tr.IssuedAt.Before(issued) && issued.Sub(tr.IssuedAt) < lifetime {
		issued = tr.IssuedAt
	}
	return cachedToken{value: value, expires: issued.Add(lifetime * 9 / 10)}, nil
}
