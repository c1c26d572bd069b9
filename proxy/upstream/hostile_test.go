package upstream_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy/upstream"
)

// recorder is a loopback server that answers every request with body and
// remembers each request's headers.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func newRecorder(t *testing.T, body string) *recorder {
	t.Helper()
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, req.Header.Clone())
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		io.WriteString(w, body)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) requests() []http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]http.Header(nil), r.seen...)
}

func newClient(t *testing.T, cfg upstream.Config) *upstream.Client {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "hostile.test"
	}
	if cfg.Retries == 0 {
		cfg.Retries = -1
	}
	c, err := upstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const blobBody = "layer bytes from the CDN"

var blobDigest = digest.FromString(blobBody)

// redirecting answers /v2/ and redirects every other request to target
// (with the request's path), after checking basic auth when user is set.
func redirecting(target func() string, user, pass string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user != "" {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
		}
		if r.URL.Path == "/v2/" {
			return
		}
		http.Redirect(w, r, target()+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	})
}

func TestRedirectsFollowedForBlobsOnly(t *testing.T) {
	cdn := newRecorder(t, blobBody)
	up := httptest.NewServer(redirecting(func() string { return cdn.URL }, "", ""))
	defer up.Close()
	c := newClient(t, upstream.Config{URL: up.URL})
	ctx := context.Background()

	tests := []struct {
		name string
		call func() error
	}{
		{"manifest by tag", func() error { _, err := c.GetManifest(ctx, "team/app", "1.0", nil); return err }},
		{"manifest by digest", func() error {
			_, err := c.GetManifest(ctx, "team/app", digest.FromString(blobBody).String(), nil)
			return err
		}},
		{"manifest HEAD", func() error { _, err := c.HeadManifest(ctx, "team/app", "1.0", nil); return err }},
		{"tag list", func() error { _, err := c.Tags(ctx, "team/app"); return err }},
		{"referrers", func() error { _, err := c.Referrers(ctx, "team/app", blobDigest, ""); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, upstream.ErrRedirect) || !strings.Contains(err.Error(), "hostile.test") {
				t.Fatalf("got %v, want ErrRedirect naming the upstream", err)
			}
			if upstream.Temporary(err) {
				t.Errorf("a refused redirect is reported as temporary: %v", err)
			}
		})
	}
	if n := len(cdn.requests()); n != 0 {
		t.Fatalf("the redirect target got %d requests for non-blob requests", n)
	}

	// A blob GET follows the redirect: the upstream is on loopback, so a
	// loopback CDN is allowed.
	body, _, err := c.GetBlob(ctx, "team/app", blobDigest)
	if err != nil {
		t.Fatalf("blob GET through a redirect: %v", err)
	}
	got, _ := io.ReadAll(body)
	body.Close()
	if string(got) != blobBody {
		t.Fatalf("blob body %q", got)
	}
}

func TestBlobRedirectLimits(t *testing.T) {
	cdn := newRecorder(t, blobBody)
	tlsUp := httptest.NewTLSServer(redirecting(func() string { return cdn.URL }, "", ""))
	defer tlsUp.Close()

	// hops builds a chain of n redirects ending at the CDN.
	hops := func(n int) string {
		next := cdn.URL
		for range n {
			target := next
			srv := httptest.NewServer(redirecting(func() string { return target }, "", ""))
			t.Cleanup(srv.Close)
			next = srv.URL
		}
		return next
	}
	tests := []struct {
		name  string
		cfg   upstream.Config
		ok    bool
		wants error
	}{
		{"3 hops", upstream.Config{URL: hops(3)}, true, nil},
		{"4 hops", upstream.Config{URL: hops(4)}, false, upstream.ErrRedirect},
		{"https upstream to http", upstream.Config{URL: tlsUp.URL, Insecure: true}, false, upstream.ErrRedirect},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(cdn.requests())
			body, _, err := newClient(t, tc.cfg).GetBlob(context.Background(), "team/app", blobDigest)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				body.Close()
				return
			}
			if !errors.Is(err, tc.wants) {
				if err == nil {
					body.Close()
				}
				t.Fatalf("got %v, want %v", err, tc.wants)
			}
			if n := len(cdn.requests()) - before; n != 0 {
				t.Fatalf("the refused target got %d requests", n)
			}
		})
	}
}

// Redirects to a forbidden class are refused before any connection; these
// addresses are never dialled (the refusal happens on the Location itself).
func TestBlobRedirectToForbiddenAddressRefused(t *testing.T) {
	for _, target := range []string{
		"http://169.254.169.254/latest/meta-data",
		"http://[::ffff:10.0.0.1]:8080",
		"http://10.0.0.1",
		"http://[fe80::1]",
		"http://0.0.0.0",
	} {
		t.Run(target, func(t *testing.T) {
			up := httptest.NewServer(redirecting(func() string { return target }, "", ""))
			defer up.Close()
			_, _, err := newClient(t, upstream.Config{URL: up.URL}).GetBlob(context.Background(), "team/app", blobDigest)
			if !errors.Is(err, upstream.ErrForbiddenAddress) {
				t.Fatalf("redirect to %s: %v, want ErrForbiddenAddress", target, err)
			}
		})
	}
}

// Credentials never leave their origin: not to another port on the same
// host (net/http would send them there), not to another host.
func TestAuthorizationNotForwardedToAnotherOrigin(t *testing.T) {
	const bearerToken = "t0ken"
	tests := []struct {
		name string
		up   func(cdn string) http.Handler
		cfg  upstream.Config
	}{
		{"basic", func(cdn string) http.Handler { return redirecting(func() string { return cdn }, "bot", "s3cret") },
			upstream.Config{Username: "bot", Password: "s3cret"}},
		{"bearer", func(cdn string) http.Handler {
			mux := http.NewServeMux()
			mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, `{"token":"`+bearerToken+`"}`)
			})
			mux.HandleFunc("/v2/", func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Authorization") != "Bearer "+bearerToken {
					w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+r.Host+`/token",service="test"`)
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				http.Redirect(w, r, cdn+r.URL.RequestURI(), http.StatusTemporaryRedirect)
			})
			return mux
		}, upstream.Config{Username: "bot", Password: "s3cret"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cdn := newRecorder(t, blobBody)
			up := httptest.NewServer(tc.up(cdn.URL))
			defer up.Close()
			tc.cfg.URL = up.URL
			body, _, err := newClient(t, tc.cfg).GetBlob(context.Background(), "team/app", blobDigest)
			if err != nil {
				t.Fatal(err)
			}
			body.Close()
			reqs := cdn.requests()
			if len(reqs) != 1 {
				t.Fatalf("CDN got %d requests, want 1", len(reqs))
			}
			if a := reqs[0].Get("Authorization"); a != "" {
				t.Fatalf("Authorization %q reached another origin (same host, other port)", a)
			}
		})
	}
}

func TestTokenRequestFollowsNoRedirect(t *testing.T) {
	elsewhere := newRecorder(t, `{"token":"stolen"}`)
	mux := http.NewServeMux()
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/token", http.StatusFound)
	})
	mux.HandleFunc("/v2/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+r.Host+`/token"`)
		w.WriteHeader(http.StatusUnauthorized)
	})
	up := httptest.NewServer(mux)
	defer up.Close()
	c := newClient(t, upstream.Config{URL: up.URL})
	// Even from a blob GET, the one request kind whose redirects are followed.
	_, _, err := c.GetBlob(context.Background(), "team/app", blobDigest)
	if !errors.Is(err, upstream.ErrRedirect) {
		t.Fatalf("token endpoint redirect: %v, want ErrRedirect", err)
	}
	if n := len(elsewhere.requests()); n != 0 {
		t.Fatalf("the token redirect was followed (%d requests)", n)
	}
}

func TestTokenRealmOnForbiddenAddressRefused(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="http://169.254.169.254/token"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer up.Close()
	_, err := newClient(t, upstream.Config{URL: up.URL}).GetManifest(context.Background(), "team/app", "1.0", nil)
	if !errors.Is(err, upstream.ErrForbiddenAddress) {
		t.Fatalf("realm on a link-local address: %v, want ErrForbiddenAddress", err)
	}
}

func TestTokenResponseIsBounded(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"token":"`+strings.Repeat("a", 2<<20)+`"}`)
	})
	mux.HandleFunc("/v2/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+r.Host+`/token"`)
		w.WriteHeader(http.StatusUnauthorized)
	})
	up := httptest.NewServer(mux)
	defer up.Close()
	_, err := newClient(t, upstream.Config{URL: up.URL}).GetManifest(context.Background(), "team/app", "1.0", nil)
	if !errors.Is(err, upstream.ErrTooLarge) {
		t.Fatalf("2 MiB token response: %v, want ErrTooLarge", err)
	}
}
