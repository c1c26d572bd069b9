package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func hashOf(token string) string { s := sha256.Sum256([]byte(token)); return hex.EncodeToString(s[:]) }

func TestParseTokens(t *testing.T) {
	good := hashOf("t1")
	for _, tc := range []struct {
		name, yaml, says string
	}{
		{"fine", good + ": {name: ci, scopes: [read, admin]}", ""},
		{"upper-case hex", strings.ToUpper(good) + ": {name: ci, scopes: [read]}", ""},
		{"empty", "", "parse"},
		{"no tokens", "{}", "no tokens"},
		{"not a hash", "secret: {name: ci, scopes: [read]}", "sha256"},
		{"short hash", good[:62] + ": {name: ci, scopes: [read]}", "sha256"},
		{"no name", good + ": {scopes: [read]}", "name is required"},
		{"no scopes", good + ": {name: ci}", "scopes are required"},
		{"unknown scope", good + ": {name: ci, scopes: [write]}", "unknown scope"},
		{"unknown field", good + ": {name: ci, scopes: [read], token: t1}", `line 1: unknown key "token" in ` + good[:8] + `…; allowed: name, scopes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tokens, err := ParseTokens([]byte(tc.yaml))
			if tc.says == "" {
				if err != nil || tokens.Len() != 1 {
					t.Fatalf("%v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v, want one saying %q", err, tc.says)
			}
		})
	}
}

func TestTokensScopes(t *testing.T) {
	tokens, err := ParseTokens([]byte(hashOf("reader-secret") + ": {name: reader, scopes: [read]}\n" +
		hashOf("admin-secret") + ": {name: admin, scopes: [admin]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tokens.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	var user string
	tokens.AsUser = func(ctx context.Context, u string) context.Context { user = u; return ctx }
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := tokens.Wrap(next)
	for _, tc := range []struct {
		name, method string
		auth         []string
		status       int
		user         string
		path         string // default /api/v1/images
	}{
		{"no header", "GET", nil, 401, "", ""},
		{"basic credentials", "GET", []string{"Basic dXNlcjpwdw=="}, 401, "", ""},
		{"unknown token", "GET", []string{"Bearer nope"}, 401, "", ""},
		{"empty token", "GET", []string{"Bearer "}, 401, "", ""},
		{"two headers", "GET", []string{"Bearer reader-secret", "Bearer admin-secret"}, 401, "", ""},
		{"huge token", "GET", []string{"Bearer " + strings.Repeat("x", maxTokenLen+1)}, 401, "", ""},
		{"read token reads", "GET", []string{"Bearer reader-secret"}, 418, "reader", ""},
		{"read token heads", "HEAD", []string{"bearer reader-secret"}, 418, "reader", ""},
		{"read token may not POST", "POST", []string{"Bearer reader-secret"}, 403, "", ""},
		{"admin token reads", "GET", []string{"Bearer admin-secret"}, 418, "admin", ""},
		{"admin token POSTs", "POST", []string{"Bearer admin-secret"}, 418, "admin", ""},
		// An admission review is a POST that only reads: the webhook's token needs read.
		{"read token reviews admission", "POST", []string{"Bearer reader-secret"}, 418, "reader", "/api/v1/admission"},
		{"read token reviews mutation", "POST", []string{"Bearer reader-secret"}, 418, "reader", "/api/v1/admission/mutate"},
		{"read token may not POST near admission", "POST", []string{"Bearer reader-secret"}, 403, "", "/api/v1/admission/other"},
		{"admission needs a token", "POST", nil, 401, "", "/api/v1/admission"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user = ""
			path := tc.path
			if path == "" {
				path = "/api/v1/images"
			}
			r := httptest.NewRequest(tc.method, path, nil)
			for _, a := range tc.auth {
				r.Header.Add("Authorization", a)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status || user != tc.user {
				t.Fatalf("%d (user %q) %s", w.Code, user, w.Body)
			}
			if tc.status == 418 {
				return
			}
			var e apiError
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code == "" || e.Message == "" || w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("not a JSON error: %s", w.Body)
			}
			if strings.Contains(w.Body.String(), "secret") {
				t.Fatalf("the answer repeats the token: %s", w.Body)
			}
			if tc.status == 401 && w.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("401 without a challenge")
			}
		})
	}
}

func FuzzParseTokens(f *testing.F) {
	f.Add([]byte(hashOf("t") + ": {name: ci, scopes: [read]}"))
	f.Add([]byte("x: {name: a, scopes: [admin, read]}"))
	f.Add([]byte("&a [*a, *a]"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		tokens, err := ParseTokens(raw)
		if err != nil {
			return
		}
		for _, tk := range tokens.tokens {
			if tk.Name == "" || len(tk.Scopes) == 0 || !tk.has(ScopeRead) {
				t.Fatalf("accepted %+v", tk)
			}
		}
	})
}
