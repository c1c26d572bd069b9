package e2e

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/test/harness"
)

// TestUpstreamFailureNamesTheCause: a pull through an upstream that cannot
// be reached tells the client why, in the OCI error message: the DNS name
// that did not resolve, a refused connection, the TLS problem or a
// timeout, each from a real failing upstream on loopback, and never the
// mirror's credentials for it.
func TestUpstreamFailureNamesTheCause(t *testing.T) {
	const secret = "s3cret-upstream-password"
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}

	// A TLS server whose certificate no configured CA signed.
	badTLS := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(badTLS.Close)
	// A plain HTTP server addressed as https://.
	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)
	// A server that accepts connections and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		var held []net.Conn
		defer func() {
			for _, c := range held {
				c.Close()
			}
		}()
		for range 100 {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	closedPort := harness.FreePort(t)

	upstreams := []struct{ name, url string }{
		{"closed.test", fmt.Sprintf("http://127.0.0.1:%d", closedPort)},
		{"badtls.test", badTLS.URL},
		{"plain.test", strings.Replace(plain.URL, "http://", "https://", 1)},
		{"nodns.test", "https://registry.portcullis.invalid"},
		{"silent.test", "http://" + silent.Addr().String()},
	}
	var cfg strings.Builder
	cfg.WriteString("upstreams:\n")
	for _, u := range upstreams {
		fmt.Fprintf(&cfg, "  - {name: %s, url: %q, username: bot, password_file: %q, timeout: 1s, retries: -1}\n", u.name, u.url, pwFile)
	}
	cfgPath := filepath.Join(dir, "portcullis.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	pc := harness.StartPortcullis(t, harness.BuildPortcullis(t), "--config", cfgPath)

	for _, tc := range []struct {
		upstream string
		status   int
		want     string
	}{
		{"closed.test", http.StatusServiceUnavailable, "upstream unreachable: connection refused"},
		{"badtls.test", http.StatusServiceUnavailable, "upstream unreachable: TLS: certificate signed by unknown authority"},
		{"plain.test", http.StatusServiceUnavailable, "upstream unreachable: TLS: the upstream did not answer with TLS"},
		{"nodns.test", http.StatusServiceUnavailable, "upstream unreachable: DNS lookup of registry.portcullis.invalid failed"},
		{"silent.test", http.StatusGatewayTimeout, "upstream did not answer in time"},
	} {
		t.Run(tc.upstream, func(t *testing.T) {
			for _, path := range []string{"/v2/team/app/manifests/1.0", "/v2/team/app/blobs/sha256:" + strings.Repeat("ab", 32)} {
				start := time.Now()
				r := do(t, "GET", pc.URL+path+"?ns="+tc.upstream)
				msg := wantError(t, r, tc.status, "UNAVAILABLE")
				if !strings.Contains(msg, tc.want) {
					t.Errorf("GET %s: message %q, want it to contain %q", path, msg, tc.want)
				}
				for _, leak := range []string{secret, base64.StdEncoding.EncodeToString([]byte("bot:" + secret))} {
					if strings.Contains(string(r.body), leak) {
						t.Errorf("GET %s: the error body carries the upstream credentials: %s", path, r.body)
					}
				}
				t.Logf("GET %s (%s): %d %s", path, time.Since(start).Round(time.Millisecond), r.status, msg)
			}
		})
	}
}
