package upstream

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/telemetry"
)

// Span names and attributes (README, "Traces").
const (
	spanFetch   = "upstream.fetch"
	spanAttempt = "upstream.attempt"
	spanToken   = "upstream.token"

	attrUpstream = attribute.Key("portcullis.upstream")
	attrAttempt  = attribute.Key("portcullis.attempt")
	attrBytes    = attribute.Key("portcullis.bytes")
	attrMethod   = attribute.Key("http.request.method")
	attrPath     = attribute.Key("url.path")
	attrStatus   = attribute.Key("http.response.status_code")
	attrServer   = attribute.Key("server.address")
)

// do sends an idempotent request (see attempts) in an upstream.fetch span
// when tracing. The span of a response with a body ends when the body is
// closed, so a blob's span covers its transfer.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, scope string, header http.Header) (*http.Response, error) {
	if c.tracer == nil {
		return c.attempts(ctx, method, path, query, scope, header)
	}
	ctx, span := c.tracer.Start(ctx, spanFetch, trace.WithAttributes(
		attrUpstream.String(c.name), attrMethod.String(method), attrPath.String(path)))
	resp, err := c.attempts(ctx, method, path, query, scope, header)
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) {
			span.SetAttributes(attrStatus.Int(se.Status))
		}
		span.SetStatus(codes.Error, err.Error())
		span.End()
		return nil, err
	}
	span.SetAttributes(attrStatus.Int(resp.StatusCode))
	if method == http.MethodHead || resp.Body == nil || resp.Body == http.NoBody {
		span.End()
		return resp, nil
	}
	resp.Body = telemetry.EndOnClose(resp.Body, span, attrBytes)
	return resp, nil
}

// startAttempt starts the span of one HTTP request of a fetch; n counts
// the requests sent for it from 1 (a resend after a 401 counts).
func (c *Client) startAttempt(ctx context.Context, n int) (context.Context, trace.Span) {
	if c.tracer == nil {
		return ctx, nil
	}
	return c.tracer.Start(ctx, spanAttempt, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attrAttempt.Int(n)))
}

// endAttempt records how one request went and ends its span.
func endAttempt(span trace.Span, resp *http.Response, err error) {
	if span == nil {
		return
	}
	switch {
	case err != nil:
		span.SetStatus(codes.Error, err.Error())
	default:
		span.SetAttributes(attrStatus.Int(resp.StatusCode))
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			span.SetStatus(codes.Error, resp.Status)
		}
	}
	span.End()
}

// startToken starts the span of a registry token request.
func (a *authenticator) startToken(ctx context.Context, realm string) (context.Context, trace.Span) {
	if a.tracer == nil {
		return ctx, nil
	}
	host := ""
	if u, err := url.Parse(realm); err == nil {
		host = u.Host
	}
	return a.tracer.Start(ctx, spanToken, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attrServer.String(host)))
}

// endToken ends a token span.
func endToken(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
