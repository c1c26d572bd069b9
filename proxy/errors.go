package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/proxy/upstream"
)

// regError is what a /v2/ handler returns; the root handler writes it once,
// as the error body the distribution spec defines:
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes
type regError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
	cause      error // logged, never sent: it may name internal addresses
	// internal marks a failure of Portcullis itself (cause set): the client
	// gets InternalMessage with the request id, the log gets the cause.
	internal bool
	// unknownRegistry marks a request for a registry that is not a
	// configured upstream (Resolve reports it as ErrUnknownRegistry).
	unknownRegistry bool
}

// Error is the text for logs and Go callers (the pipeline, the API): for an
// internal error it carries the cause, which the client body never does.
func (e *regError) Error() string {
	if e.internal && e.cause != nil {
		return e.Code + ": " + e.cause.Error()
	}
	return e.Code + ": " + e.Message
}

// HTTPStatus is the status a client of /v2/ would get, for callers outside
// the package that answer in their own format (the status API).
func (e *regError) HTTPStatus() int { return e.Status }

// Is lets callers outside the package tell internal failures apart.
func (e *regError) Is(target error) bool { return e.internal && target == ErrInternal }

func (e *regError) write(w http.ResponseWriter, head bool) {
	type item struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	body, _ := json.Marshal(struct {
		Errors []item `json:"errors"`
	}{[]item{{e.Code, e.Message}}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Del("Docker-Content-Digest")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((e.RetryAfter+time.Second-1)/time.Second)))
	}
	w.WriteHeader(e.Status)
	if !head {
		_, _ = w.Write(body)
	}
}

func errorf(status int, code, format string, args ...any) *regError {
	return &regError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

func errUnsupported(format string, args ...any) *regError {
	return errorf(http.StatusMethodNotAllowed, "UNSUPPORTED", format, args...)
}

func errNameInvalid(format string, args ...any) *regError {
	return errorf(http.StatusBadRequest, "NAME_INVALID", format, args...)
}

// errNameUnknown is for a registry the mirror does not serve.
func errNameUnknown(format string, args ...any) *regError {
	e := errorf(http.StatusNotFound, "NAME_UNKNOWN", format, args...)
	e.unknownRegistry = true
	return e
}

// errInternal reports a failure of Portcullis itself. what and err are
// logged only: they name files, keys and Go errors a client has no use for.
func errInternal(what string, err error) *regError {
	return &regError{Status: http.StatusInternalServerError, Code: "UNKNOWN", Message: ErrInternal.Error(),
		cause: fmt.Errorf("%s: %w", what, err), internal: true}
}

// fromUpstream translates an upstream failure into what the client sees.
// notFoundCode is the code for a 404 (MANIFEST_UNKNOWN, BLOB_UNKNOWN, …).
// Upstream credentials and challenges never reach the client: an upstream 401
// becomes a plain UNAUTHORIZED error without a WWW-Authenticate header, so
// clients do not try to log in to us with credentials meant for someone else.
func fromUpstream(what string, err error, notFoundCode string) *regError {
	var se *upstream.StatusError
	switch {
	case errors.As(err, &se):
		switch se.Status {
		case http.StatusNotFound:
			return errorf(http.StatusNotFound, notFoundCode, "%s: %s", what, se.Detail())
		case http.StatusUnauthorized:
			return errorf(http.StatusUnauthorized, "UNAUTHORIZED", "%s: upstream refused the credentials of this mirror: %s", what, se.Detail())
		case http.StatusForbidden:
			return errorf(http.StatusForbidden, "DENIED", "%s: %s", what, se.Detail())
		case http.StatusTooManyRequests:
			return &regError{Status: http.StatusTooManyRequests, Code: "TOOMANYREQUESTS",
				Message: fmt.Sprintf("%s: upstream rate limit: %s", what, se.Detail()), RetryAfter: se.RetryAfter}
		case http.StatusBadRequest:
			if se.Code != "" {
				return errorf(http.StatusBadRequest, se.Code, "%s: %s", what, se.Detail())
			}
		}
		return errorf(http.StatusBadGateway, "UNAVAILABLE", "%s: %v", what, err)
	case errors.Is(err, upstream.ErrDigestMismatch), errors.Is(err, upstream.ErrTooLarge):
		return errorf(http.StatusBadGateway, "UNAVAILABLE", "%s: %v", what, err)
	case errors.Is(err, upstream.ErrInvalidManifest):
		return errorf(http.StatusBadGateway, "MANIFEST_INVALID", "%s: %v", what, err)
	case errors.Is(err, upstream.ErrRedirect), errors.Is(err, upstream.ErrForbiddenAddress):
		// The message names the upstream but not where it tried to send
		// us: that may be an internal address.
		e := errorf(http.StatusBadGateway, "UNAVAILABLE", "%s: the upstream's answer was refused (redirect or address not allowed)", what)
		e.cause = err
		return e
	case errors.Is(err, context.DeadlineExceeded):
		e := errorf(http.StatusGatewayTimeout, "UNAVAILABLE", "%s: upstream did not answer in time", what)
		e.cause = err
		return e
	default:
		status, msg := http.StatusServiceUnavailable, "upstream unreachable"
		if cause, timeout := unreachableCause(err); cause != "" {
			msg += ": " + cause
			if timeout {
				status = http.StatusGatewayTimeout
			}
		}
		e := errorf(status, "UNAVAILABLE", "%s: %s", what, msg)
		e.cause = err
		return e
	}
}

// errHTTPToHTTPS is net/http's text for a plain HTTP answer to a TLS
// handshake: the error it makes has no type to test (only matched, never
// sent).
const errHTTPToHTTPS = "http: server gave HTTP response to HTTPS client"

// maxHostInMessage bounds a host name quoted to the client (DNS allows 253).
const maxHostInMessage = 253

// unreachableCause names the class of a network failure for the client, so
// "upstream unreachable" says which of DNS, TCP, TLS or a timeout failed and
// what to fix. It is built from the error's type only, never its text: that
// may carry URLs, addresses or headers, and so credentials.
func unreachableCause(err error) (cause string, timeout bool) {
	var (
		dnsErr    *net.DNSError
		unknownCA x509.UnknownAuthorityError
		wrongHost x509.HostnameError
		badCert   x509.CertificateInvalidError
		notTLS    tls.RecordHeaderError
		verifyErr *tls.CertificateVerificationError
		alert     tls.AlertError
		opErr     *net.OpError
		netErr    net.Error
	)
	switch {
	case errors.As(err, &dnsErr):
		host := truncateHost(dnsErr.Name)
		switch {
		case dnsErr.IsNotFound:
			return fmt.Sprintf("DNS lookup of %s failed: no such host", host), false
		case dnsErr.IsTimeout:
			return fmt.Sprintf("DNS lookup of %s timed out", host), true
		}
		return fmt.Sprintf("DNS lookup of %s failed", host), false
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", false
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by the upstream", false
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to the upstream's address", false
	case errors.As(err, &unknownCA):
		return "TLS: certificate signed by unknown authority (set the upstream's ca_file)", false
	case errors.As(err, &wrongHost):
		return "TLS: certificate is not valid for " + truncateHost(wrongHost.Host), false
	case errors.As(err, &badCert):
		if badCert.Reason == x509.Expired {
			return "TLS: certificate has expired or is not yet valid", false
		}
		return "TLS: certificate is not valid", false
	case errors.As(err, &verifyErr):
		return "TLS: certificate verification failed", false
	case errors.As(err, &notTLS):
		return "TLS: the upstream did not answer with TLS (is it plain http://?)", false
	case strings.Contains(err.Error(), errHTTPToHTTPS):
		return "TLS: the upstream did not answer with TLS (is it plain http://?)", false
	case errors.As(err, &alert):
		return "TLS: the upstream refused the handshake", false
	case errors.As(err, &opErr) && opErr.Op == "dial" && opErr.Timeout():
		return "connecting timed out", true
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timed out waiting for the upstream", true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the upstream closed the connection", false
	}
	return "", false
}

func truncateHost(h string) string {
	if len(h) > maxHostInMessage {
		return h[:maxHostInMessage] + "…"
	}
	return h
}
