// Package upstream talks to the registries Portcullis mirrors: auth (anonymous,
// basic, the bearer token flow), bounded retries, timeouts, and digest
// verification of everything it returns as bytes.
package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/telemetry"
)

var (
	// ErrUnreachable wraps network failures and timeouts talking to an upstream.
	ErrUnreachable = errors.New("upstream unreachable")
	// ErrDigestMismatch means the upstream sent bytes that do not hash to the digest asked for or announced.
	ErrDigestMismatch = errors.New("digest mismatch")
	// ErrTooLarge means a manifest exceeded MaxManifestSize.
	ErrTooLarge = errors.New("too large")
)

// MaxManifestSize bounds what we read as a manifest, like distribution's
// default; anything larger is not a manifest a client should pull.
const MaxManifestSize = 4 << 20

// MaxResponseHeaderBytes bounds an upstream response's header block; real
// registries send a few KiB (net/http's default would be 10 MiB).
const MaxResponseHeaderBytes = 64 << 10

// Config describes one upstream registry.
type Config struct {
	Name     string        // the name clients use: docker.io, ghcr.io, …
	URL      string        // where it really is: https://registry-1.docker.io, http://127.0.0.1:5001
	Username string        // empty for anonymous
	Password string        //nolint:gosec // read from a file or env var by the caller
	CAFile   string        // extra CA bundle for its TLS certificate
	Insecure bool          // skip TLS verification (never for public registries)
	Timeout  time.Duration // dial and response-header timeout; 0 means 30 s
	Retries  int           // extra attempts for idempotent requests; negative means none, 0 means 2
	// MaxRetryAfter is the longest Retry-After we wait out ourselves; a longer
	// one goes back to the client as TOOMANYREQUESTS. 0 means 2 s.
	MaxRetryAfter time.Duration
	// Metrics counts and times every HTTP request sent (token requests
	// and retries included); nil records nothing.
	Metrics *telemetry.UpstreamMetrics
	// Tracer records each fetch, its HTTP attempts and token requests as
	// spans (tracing.go); nil or a no-op tracer records none.
	Tracer trace.Tracer
}

// Client fetches from one upstream registry. It is safe for concurrent use.
type Client struct {
	name          string
	base          *url.URL
	http          *http.Client
	auth          *authenticator
	retries       int
	maxRetryAfter time.Duration
	tracer        trace.Tracer // nil: no spans
}

// New builds a client; it does not contact the upstream.
func New(cfg Config) (*Client, error) {
	base, err := url.Parse(cfg.URL)
	if err != nil || base.Host == "" || (base.Scheme != "http" && base.Scheme != "https") {
		return nil, fmt.Errorf("upstream %s: url %q must be http(s)://host[:port]", cfg.Name, cfg.URL)
	}
	if p := strings.Trim(base.Path, "/"); p != "" {
		return nil, fmt.Errorf("upstream %s: url %q must not have a path", cfg.Name, cfg.URL)
	}
	base.Path, base.RawQuery, base.Fragment = "", "", ""
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.Insecure} //nolint:gosec // opt-in for test upstreams
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: read ca_file: %w", cfg.Name, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream %s: ca_file %s holds no PEM certificate", cfg.Name, cfg.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	g := newGuard(base, net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second})
	transport := &http.Transport{
		Proxy:                  g.proxy,
		DialContext:            g.dialContext,
		TLSClientConfig:        tlsConf,
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		ExpectContinueTimeout:  time.Second,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    64,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
		MaxResponseHeaderBytes: MaxResponseHeaderBytes,
	}
	var rt http.RoundTripper = transport
	if cfg.Metrics != nil {
		rt = measuredTransport{next: transport, metrics: cfg.Metrics}
	}
	hc := &http.Client{Transport: rt, CheckRedirect: g.checkRedirect(cfg.Name, base.Scheme == "http")}
	retries := cfg.Retries
	switch {
	case retries == 0:
		retries = 2
	case retries < 0:
		retries = 0
	}
	maxRA := cfg.MaxRetryAfter
	if maxRA <= 0 {
		maxRA = 2 * time.Second
	}
	return &Client{
		name: cfg.Name,
		base: base,
		http: hc,
		auth: &authenticator{
			username:       cfg.Username,
			password:       cfg.Password,
			httpClient:     hc,
			allowHTTPRealm: base.Scheme == "http",
			guard:          g,
			now:            time.Now,
			tokens:         map[string]cachedToken{},
			tracer:         telemetry.Recording(cfg.Tracer),
		},
		retries:       retries,
		maxRetryAfter: maxRA,
		tracer:        telemetry.Recording(cfg.Tracer),
	}, nil
}

// Name is the name clients use for this upstream.
func (c *Client) Name() string { return c.name }

// StatusError is an upstream's HTTP error answer.
type StatusError struct {
	Upstream   string
	Status     int
	Code       string // OCI error code from the body, if any
	Message    string
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("upstream %s answered %d: %s", e.Upstream, e.Status, e.Detail())
}

// Detail is the upstream's own explanation, safe to show a client.
func (e *StatusError) Detail() string {
	switch {
	case e.Code != "" && e.Message != "":
		return e.Code + ": " + e.Message
	case e.Code != "":
		return e.Code
	case e.Message != "":
		return e.Message
	}
	return http.StatusText(e.Status)
}

// Temporary reports whether err means the upstream could not answer now
// (unreachable, timed out, 5xx, rate limited), as opposed to an answer such
// as "not found". Cached content may stand in for a temporary failure.
func Temporary(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status == http.StatusTooManyRequests || se.Status >= 500
	}
	return errors.Is(err, ErrUnreachable) || errors.Is(err, context.DeadlineExceeded)
}

// IsNotFound reports whether the upstream answered 404.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == http.StatusNotFound
}

func pullScope(repo string) string { return "repository:" + repo + ":pull" }

// attempts sends an idempotent request, authenticating as the upstream asks
// and retrying network errors, 5xx and short 429s with backoff. Only a
// response with status < 400 is returned; everything else is an error.
func (c *Client) attempts(ctx context.Context, method, path string, query url.Values, scope string, header http.Header) (*http.Response, error) {
	u := *c.base
	u.Path = path
	u.RawQuery = query.Encode()
	target := u.String()
	authRetried := false
	var lastErr error
	sent := 0
	for attempt := 0; ; attempt++ {
		sent++
		actx, aspan := c.startAttempt(ctx, sent)
		req, err := http.NewRequestWithContext(actx, method, target, nil)
		if err != nil {
			endAttempt(aspan, nil, err)
			return nil, err
		}
		for k, vs := range header {
			req.Header[k] = vs
		}
		c.auth.apply(req, scope)
		resp, err := c.http.Do(req)
		endAttempt(aspan, resp, err)
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%s %s: %w", method, target, ctx.Err())
			}
			if errors.Is(err, ErrRedirect) || errors.Is(err, ErrForbiddenAddress) {
				// The upstream's answer, not a network failure: asking
				// again gets the same answer.
				return nil, fmt.Errorf("%s %s: %w", method, target, err)
			}
			lastErr = fmt.Errorf("%w: %s %s: %w", ErrUnreachable, method, target, err) // both kept: the client is told the cause class
		case resp.StatusCode == http.StatusUnauthorized && !authRetried:
			authRetried = true
			retry, aerr := c.auth.handleUnauthorized(ctx, resp, scope)
			se := c.statusError(resp)
			if aerr != nil {
				return nil, fmt.Errorf("authenticate to %s: %w", c.name, aerr)
			}
			if !retry {
				return nil, se
			}
			attempt-- // the auth round trip is not a retry
			continue
		case resp.StatusCode < 400:
			return resp, nil
		case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
			se := c.statusError(resp)
			if se.RetryAfter > c.maxRetryAfter {
				return nil, se
			}
			wait = se.RetryAfter
			lastErr = se
		default:
			return nil, c.statusError(resp)
		}
		if attempt >= c.retries {
			return nil, lastErr
		}
		if wait == 0 {
			// 100 ms, 200 ms, 400 ms … with jitter, so retries from many
			// replicas do not arrive together.
			wait = time.Duration(100<<attempt)*time.Millisecond + rand.N(50*time.Millisecond)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%s %s: %w (after %w)", method, target, ctx.Err(), lastErr)
		case <-t.C:
		}
	}
}

// statusError reads and closes an error response.
func (c *Client) statusError(resp *http.Response) *StatusError {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	se := &StatusError{Upstream: c.name, Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	var oci struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &oci) == nil && len(oci.Errors) > 0 {
		se.Code, se.Message = oci.Errors[0].Code, oci.Errors[0].Message
	} else if resp.Request == nil || resp.Request.Method != http.MethodHead {
		se.Message = snippet(body)
	}
	return se
}

// parseRetryAfter reads delta-seconds or an HTTP date (RFC 9110 §10.2.3).
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(min(s, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

// snippet makes an upstream body printable in an error message.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// measuredTransport records each request's status and the time to its
// response headers.
type measuredTransport struct {
	next    http.RoundTripper
	metrics *telemetry.UpstreamMetrics
}

func (t measuredTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	t.metrics.Request(r.Context(), status, time.Since(start))
	return resp, err
}
