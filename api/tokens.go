package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/portcullis/portcullis/config"
	"github.com/portcullis/portcullis/proxy"
)

// Token scopes: read answers GETs, admin also POSTs (queueing scans).
const (
	ScopeRead  = "read"
	ScopeAdmin = "admin"
)

const (
	// maxTokensFile bounds the tokens file read into memory.
	maxTokensFile = 1 << 20
	// maxTokenLen bounds the bearer token hashed per request.
	maxTokenLen = 4096
)

// token is one entry of the tokens file.
type token struct {
	hash   [sha256.Size]byte
	Name   string   `yaml:"name"`
	Scopes []string `yaml:"scopes"`
}

func (t token) has(scope string) bool {
	return slices.Contains(t.Scopes, scope) || slices.Contains(t.Scopes, ScopeAdmin)
}

// Tokens authenticates API calls by bearer token. The file maps the
// sha256 (hex) of each token to its name and scopes, so it holds no
// secret itself:
//
//	4f2b…e1: {name: admission-controller, scopes: [read]}
//	9ac0…07: {name: ci, scopes: [read, admin]}
type Tokens struct {
	tokens []token
	// AsUser puts the token's name into a request's context as the user
	// the pull access rules apply to when the API resolves a reference.
	// Nil: the context is left alone.
	AsUser func(ctx context.Context, user string) context.Context
	Logger *slog.Logger
}

// LoadTokens reads and checks a tokens file.
func LoadTokens(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read api.tokens_file: %w", err)
	}
	defer f.Close()
	raw, err := readBounded(f, maxTokensFile)
	if err != nil {
		return nil, fmt.Errorf("read api.tokens_file %s: %w", path, err)
	}
	t, err := ParseTokens(raw)
	if err != nil {
		return nil, fmt.Errorf("api.tokens_file %s: %w", path, err)
	}
	return t, nil
}

func readBounded(r io.Reader, limit int64) ([]byte, error) {
	raw, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(raw)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return raw, nil
}

// ParseTokens reads the YAML of a tokens file. Every entry needs a sha256
// hex key, a name and at least one known scope.
func ParseTokens(raw []byte) (*Tokens, error) {
	var entries map[string]token
	if err := config.UnknownKeys(raw, entries, "tokens file"); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("no tokens: list sha256(token) hex → {name, scopes}, or leave api.tokens_file unset")
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	t := &Tokens{}
	for _, k := range keys {
		e := entries[k]
		h, err := hex.DecodeString(strings.ToLower(k))
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("token %q: the key must be the sha256 of the token in hex (64 characters), e.g. from `printf %%s TOKEN | sha256sum`", k)
		}
		if e.Name == "" {
			return nil, fmt.Errorf("token %s…: name is required", k[:8])
		}
		if len(e.Scopes) == 0 {
			return nil, fmt.Errorf("token %s: scopes are required (read, admin)", e.Name)
		}
		for _, s := range e.Scopes {
			if s != ScopeRead && s != ScopeAdmin {
				return nil, fmt.Errorf("token %s: unknown scope %q (want read or admin)", e.Name, s)
			}
		}
		copy(e.hash[:], h)
		t.tokens = append(t.tokens, e)
	}
	return t, nil
}

// Len is how many tokens are known.
func (t *Tokens) Len() int { return len(t.tokens) }

// lookup finds the token whose hash is sha256(secret). Every entry is
// compared, in constant time each, so the answer's timing tells nothing
// about which hashes exist.
func (t *Tokens) lookup(secret string) (token, bool) {
	sum := sha256.Sum256([]byte(secret))
	var found token
	ok := 0
	for _, tk := range t.tokens {
		if subtle.ConstantTimeCompare(sum[:], tk.hash[:]) == 1 {
			found, ok = tk, 1
		}
	}
	return found, ok == 1
}

// Check looks a token up the way Wrap does, for callers that take it in
// another form than a header (the dashboard's login form): its name and
// scopes (a copy), ok false when it is empty, too long or unknown.
func (t *Tokens) Check(secret string) (name string, scopes []string, ok bool) {
	if secret == "" || len(secret) > maxTokenLen {
		return "", nil, false
	}
	tk, found := t.lookup(secret)
	if !found {
		return "", nil, false
	}
	return tk.Name, slices.Clone(tk.Scopes), true
}

// TokenID names a token without revealing it: the first 16 hex digits of
// its sha256, the start of its key in the tokens file. A dashboard session
// records it, so a token taken out of the file ends its sessions.
func TokenID(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:8])
}

// ScopesOf returns the scopes of the token TokenID names, or false when no
// token in the file has that id (any more).
func (t *Tokens) ScopesOf(id string) ([]string, bool) {
	if len(id) != 16 {
		return nil, false
	}
	for _, tk := range t.tokens {
		if hex.EncodeToString(tk.hash[:8]) == id {
			return slices.Clone(tk.Scopes), true
		}
	}
	return nil, false
}

// Bearer reads the token of a request's Authorization header, or says
// what is wrong with it ("" and "": there is none).
func Bearer(r *http.Request) (secret, problem string) {
	if len(r.Header.Values("Authorization")) == 0 {
		return "", ""
	}
	return bearer(r)
}

func isAdmissionPath(p string) bool {
	return p == "/api/v1/admission" || p == "/api/v1/admission/mutate"
}

// Wrap refuses API calls without a known token (401) or with too small a
// scope (403): POST needs admin, admission reviews and the rest read.
func (t *Tokens) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secret, err := bearer(r)
		if err != "" {
			t.refuse(w, r, http.StatusUnauthorized, err, "")
			return
		}
		tk, ok := t.lookup(secret)
		if !ok {
			t.refuse(w, r, http.StatusUnauthorized, "unknown token", "")
			return
		}
		need := ScopeRead
		// An admission review is a POST that only reads verdicts (and
		// queues the scans a pull would): the webhook's token needs read.
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !isAdmissionPath(r.URL.Path) {
			need = ScopeAdmin
		}
		if !tk.has(need) {
			t.refuse(w, r, http.StatusForbidden, "token "+tk.Name+" lacks the "+need+" scope this call needs", tk.Name)
			return
		}
		// The token's name is who the audit log records as making a change.
		ctx := withTokenName(r.Context(), tk.Name)
		if t.AsUser != nil {
			ctx = t.AsUser(ctx, tk.Name)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// bearer reads the token of the Authorization header, or says what is
// wrong with it.
func bearer(r *http.Request) (string, string) {
	values := r.Header.Values("Authorization")
	switch {
	case len(values) == 0:
		return "", "a token is required: Authorization: Bearer <token>"
	case len(values) > 1:
		return "", "more than one Authorization header"
	}
	scheme, secret, _ := strings.Cut(values[0], " ")
	secret = strings.TrimSpace(secret)
	if !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return "", "want Authorization: Bearer <token>"
	}
	if len(secret) > maxTokenLen {
		return "", "token too long"
	}
	return secret, ""
}

func (t *Tokens) refuse(w http.ResponseWriter, r *http.Request, status int, msg, name string) {
	log := t.Logger
	if log == nil {
		log = slog.Default()
	}
	log.LogAttrs(r.Context(), slog.LevelWarn, "api request refused",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Int("status", status),
		slog.String("token", name), slog.String("remote", r.RemoteAddr), slog.String("reason", msg))
	w.Header().Set(proxy.RequestIDHeader, proxy.NewRequestID())
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis-api"`)
	}
	writeError(w, status, msg)
}
