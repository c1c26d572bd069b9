package ui

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portcullis/portcullis/api"
)

const (
	sessionCookie = "portcullis_session"
	// csrfCookie carries the double-submit value of forms posted without a
	// session (the login form; every form when there are no tokens).
	csrfCookie = "portcullis_csrf"
	// sessionLifetime is how long a login lasts.
	sessionLifetime = 12 * time.Hour
	// maxSessionCookie bounds the cookie value parsed per request.
	maxSessionCookie = 2048
	maxSessionName   = 256
	maxSessionScopes = 4
)

// sessionKeys sign sessions and derive CSRF values; one key, two labels.
type sessionKeys struct{ key []byte }

func newSessionKeys(key []byte) (sessionKeys, error) {
	if len(key) == 0 {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return sessionKeys{}, fmt.Errorf("ui: generate the session key: %w", err)
		}
	}
	if len(key) < 16 {
		return sessionKeys{}, errors.New("ui: session key shorter than 16 bytes")
	}
	return sessionKeys{key: slices.Clone(key)}, nil
}

func (k sessionKeys) mac(label, value string) []byte {
	m := hmac.New(sha256.New, k.key)
	m.Write([]byte(label))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return m.Sum(nil)
}

// session is what the cookie holds, signed: who logged in, with which
// scopes, until when.
type session struct {
	Name    string   `json:"n"`
	Scopes  []string `json:"s"`
	Expires int64    `json:"e"` // unix seconds
	// Token is the api.TokenID of the token logged in with: the session
	// lasts only while the tokens file still has it.
	Token string `json:"t"`
}

func (s session) admin() bool { return slices.Contains(s.Scopes, api.ScopeAdmin) }

// encodeSession writes payload "." signature, both base64url.
func (k sessionKeys) encodeSession(s session) string {
	raw, _ := json.Marshal(s)
	payload := base64.RawURLEncoding.EncodeToString(raw)
	return payload + "." + base64.RawURLEncoding.EncodeToString(k.mac("session", payload))
}

var errBadSession = errors.New("invalid session")

// parseSession reads a cookie value from a browser: anything but an
// unexpired value encodeSession wrote with this key is refused.
func (k sessionKeys) parseSession(v string, now time.Time) (session, error) {
	if len(v) > maxSessionCookie {
		return session{}, errBadSession
	}
	payload, sig, ok := strings.Cut(v, ".")
	if !ok {
		return session{}, errBadSession
	}
	got, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	if err != nil || !hmac.Equal(got, k.mac("session", payload)) {
		return session{}, errBadSession
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(payload)
	if err != nil {
		return session{}, errBadSession
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var s session
	if err := dec.Decode(&s); err != nil || dec.More() {
		return session{}, errBadSession
	}
	if s.Name == "" || len(s.Name) > maxSessionName || len(s.Scopes) == 0 || len(s.Scopes) > maxSessionScopes || len(s.Token) != 16 {
		return session{}, errBadSession
	}
	for _, sc := range s.Scopes {
		if sc != api.ScopeRead && sc != api.ScopeAdmin {
			return session{}, errBadSession
		}
	}
	if !now.Before(time.Unix(s.Expires, 0)) {
		return session{}, fmt.Errorf("%w: expired", errBadSession)
	}
	return s, nil
}

// csrfFor is the value a form posted within session carries.
func (k sessionKeys) csrfFor(sessionValue string) string {
	return base64.RawURLEncoding.EncodeToString(k.mac("csrf", sessionValue))
}

// formCSRF is the csrf field of the forms on a page: bound to the session
// when there is one, else the double-submit cookie's value (set now if the
// browser has none).
func (h *Handler) formCSRF(w http.ResponseWriter, r *http.Request, v *visitor) string {
	if v != nil && v.session != "" {
		return h.keys.csrfFor(v.session)
	}
	if c, err := r.Cookie(csrfCookie); err == nil && validNonce(c.Value) {
		return c.Value
	}
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	nonce := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: nonce, Path: "/ui/", HttpOnly: true,
		Secure: h.o.SecureCookies, SameSite: http.SameSiteStrictMode})
	return nonce
}

func validNonce(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// validCSRF checks the csrf field of a POST: bound to the session, or
// equal to the double-submit cookie without one.
func (h *Handler) validCSRF(r *http.Request, v visitor) bool {
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	got := r.PostFormValue("csrf")
	if got == "" || len(got) > 128 {
		return false
	}
	want := ""
	if v.session != "" {
		want = h.keys.csrfFor(v.session)
	} else if c, err := r.Cookie(csrfCookie); err == nil && validNonce(c.Value) {
		want = c.Value
	}
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func (h *Handler) setSession(w http.ResponseWriter, s session) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: h.keys.encodeSession(s), Path: "/ui/",
		Expires: time.Unix(s.Expires, 0), HttpOnly: true, Secure: h.o.SecureCookies, SameSite: http.SameSiteStrictMode})
}

func (h *Handler) clearSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/ui/", MaxAge: -1,
		HttpOnly: true, Secure: h.o.SecureCookies, SameSite: http.SameSiteStrictMode})
}

// login shows the form (GET) or checks the pasted token (POST, CSRF
// double-submit: nobody is logged in yet).
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.render(w, r, http.StatusOK, "login", pageData{Title: "Log in", CSRF: h.formCSRF(w, r, nil)})
		return
	}
	if !h.validCSRF(r, visitor{}) {
		h.errorPage(w, r, nil, http.StatusForbidden, "Refused", "The form's CSRF check failed: reload the login page and try again.")
		return
	}
	secret := strings.TrimSpace(r.PostFormValue("token"))
	name, scopes, ok := h.o.Tokens.Check(secret)
	if !ok {
		h.log.WarnContext(r.Context(), "ui login refused", "remote", r.RemoteAddr, "reason", "unknown token")
		h.render(w, r, http.StatusUnauthorized, "login", pageData{Title: "Log in", CSRF: h.formCSRF(w, r, nil), Error: "Unknown token."})
		return
	}
	h.setSession(w, session{Name: name, Scopes: scopes, Expires: h.now().Add(sessionLifetime).Unix(), Token: api.TokenID(secret)})
	h.log.InfoContext(r.Context(), "ui login", "token", name, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
}

// logout forgets the session (POST with its CSRF value).
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	var v visitor
	if c, err := r.Cookie(sessionCookie); err == nil {
		if _, err := h.keys.parseSession(c.Value, h.now()); err == nil {
			v.session = c.Value
		}
	}
	if v.session != "" && !h.validCSRF(r, v) {
		h.errorPage(w, r, nil, http.StatusForbidden, "Refused", "The form's CSRF check failed: reload the page and try again.")
		return
	}
	h.clearSession(w)
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}
