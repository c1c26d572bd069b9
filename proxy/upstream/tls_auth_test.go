package upstream_test

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcr "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/portcullis/portcullis/proxy/upstream"
)

// registryWith serves a ggcr registry holding team/app:1.0 behind wrap.
func registryWith(t *testing.T, tlsServer bool, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	reg := ggcr.New(ggcr.Logger(log.New(io.Discard, "", 0)))
	var srv *httptest.Server
	if tlsServer {
		srv = httptest.NewTLSServer(wrap(reg))
	} else {
		srv = httptest.NewServer(wrap(reg))
	}
	t.Cleanup(srv.Close)
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Seed straight into the registry handler, around the wrapper.
	seed := httptest.NewServer(reg)
	defer seed.Close()
	ref, _ := name.ParseReference(strings.TrimPrefix(seed.URL, "http://") + "/team/app:1.0")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return srv
}

func passthrough(h http.Handler) http.Handler { return h }

func TestTLSUpstreamTrust(t *testing.T) {
	srv := registryWith(t, true, passthrough)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  upstream.Config
		ok   bool
	}{
		{"unknown CA is refused", upstream.Config{}, false},
		{"ca_file trusts it", upstream.Config{CAFile: caFile}, true},
		{"insecure skips verification", upstream.Config{Insecure: true}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Name, tc.cfg.URL, tc.cfg.Retries = "tls.test", srv.URL, -1
			c, err := upstream.New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.GetManifest(context.Background(), "team/app", "1.0", nil)
			if tc.ok && err != nil {
				t.Fatal(err)
			}
			if !tc.ok && (err == nil || !strings.Contains(err.Error(), "certificate")) {
				t.Fatalf("got %v, want a certificate error", err)
			}
		})
	}
	if _, err := upstream.New(upstream.Config{Name: "x", URL: srv.URL, CAFile: filepath.Join(t.TempDir(), "missing.pem")}); err == nil {
		t.Fatal("missing ca_file accepted")
	}
}

func TestBasicAuthUpstream(t *testing.T) {
	srv := registryWith(t, false, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "bot" || p != "s3cret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	good, _ := upstream.New(upstream.Config{Name: "basic.test", URL: srv.URL, Username: "bot", Password: "s3cret"})
	if _, err := good.GetManifest(context.Background(), "team/app", "1.0", nil); err != nil {
		t.Fatalf("with credentials: %v", err)
	}
	anon, _ := upstream.New(upstream.Config{Name: "basic.test", URL: srv.URL})
	_, err := anon.GetManifest(context.Background(), "team/app", "1.0", nil)
	var se *upstream.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Fatalf("anonymous: %v, want 401", err)
	}
}
