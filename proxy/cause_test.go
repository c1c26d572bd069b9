package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/portcullis/portcullis/proxy/upstream"
)

// TestFromUpstreamNamesTheCause: an unreachable upstream's error tells the
// client the class of failure, built from the error's type, and never the
// error's text (which can carry credentials).
func TestFromUpstreamNamesTheCause(t *testing.T) {
	const secret = "hunter2-secret"
	wrap := func(err error) error {
		// The shape upstream.Client produces: the sentinel, the request
		// (here with credentials in it, as a hostile URL could) and the cause.
		return fmt.Errorf("%w: GET https://bot:%s@registry.example/v2/: %w", upstream.ErrUnreachable, secret, err)
	}
	dial := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }
	for _, tc := range []struct {
		name   string
		err    error
		status int
		want   string
	}{
		{"no such host", wrap(&net.DNSError{Err: "no such host", Name: "registry-1.docker.io", IsNotFound: true}),
			http.StatusServiceUnavailable, "upstream unreachable: DNS lookup of registry-1.docker.io failed: no such host"},
		{"DNS server failure", wrap(&net.DNSError{Err: "server misbehaving", Name: "ghcr.io"}),
			http.StatusServiceUnavailable, "upstream unreachable: DNS lookup of ghcr.io failed"},
		{"DNS timeout", wrap(&net.DNSError{Err: "i/o timeout", Name: "quay.io", IsTimeout: true}),
			http.StatusGatewayTimeout, "upstream unreachable: DNS lookup of quay.io timed out"},
		{"over-long host", wrap(&net.DNSError{Name: strings.Repeat("a", 1000), IsNotFound: true}),
			http.StatusServiceUnavailable, "DNS lookup of " + strings.Repeat("a", maxHostInMessage) + "… failed"},
		{"refused", wrap(dial(os.NewSyscallError("connect", syscall.ECONNREFUSED))),
			http.StatusServiceUnavailable, "upstream unreachable: connection refused"},
		{"reset", wrap(&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}),
			http.StatusServiceUnavailable, "upstream unreachable: connection reset by the upstream"},
		{"no route", wrap(dial(os.NewSyscallError("connect", syscall.EHOSTUNREACH))),
			http.StatusServiceUnavailable, "upstream unreachable: no route to the upstream's address"},
		{"unknown CA", wrap(&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}),
			http.StatusServiceUnavailable, "upstream unreachable: TLS: certificate signed by unknown authority"},
		{"wrong host", wrap(&tls.CertificateVerificationError{Err: x509.HostnameError{Certificate: &x509.Certificate{}, Host: "registry.example"}}),
			http.StatusServiceUnavailable, "upstream unreachable: TLS: certificate is not valid for registry.example"},
		{"expired", wrap(&tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}),
			http.StatusServiceUnavailable, "upstream unreachable: TLS: certificate has expired or is not yet valid"},
		{"not TLS", wrap(tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}),
			http.StatusServiceUnavailable, "TLS: the upstream did not answer with TLS"},
		{"plain HTTP answer", wrap(errors.New(errHTTPToHTTPS)),
			http.StatusServiceUnavailable, "TLS: the upstream did not answer with TLS"},
		{"handshake refused", wrap(tls.AlertError(40)),
			http.StatusServiceUnavailable, "TLS: the upstream refused the handshake"},
		{"dial timeout", wrap(dial(timeoutError{})),
			http.StatusGatewayTimeout, "upstream unreachable: connecting timed out"},
		{"closed", wrap(io.ErrUnexpectedEOF),
			http.StatusServiceUnavailable, "upstream unreachable: the upstream closed the connection"},
		{"fetch deadline", fmt.Errorf("GET x: %w", context.DeadlineExceeded),
			http.StatusGatewayTimeout, "upstream did not answer in time"},
		{"unknown cause", wrap(errors.New("something else " + secret)),
			http.StatusServiceUnavailable, "fetch manifest a/b:1: upstream unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := fromUpstream("fetch manifest a/b:1", tc.err, "MANIFEST_UNKNOWN")
			if e.Status != tc.status || e.Code != "UNAVAILABLE" {
				t.Errorf("status %d code %s, want %d UNAVAILABLE", e.Status, e.Code, tc.status)
			}
			if !strings.Contains(e.Message, tc.want) {
				t.Errorf("message %q, want it to contain %q", e.Message, tc.want)
			}
			if strings.Contains(e.Message, secret) || strings.Contains(e.Message, "registry.example/v2") {
				t.Errorf("message %q carries the error's text", e.Message)
			}
		})
	}
}

// timeoutError is a net.Error that timed out (not a context deadline).
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
