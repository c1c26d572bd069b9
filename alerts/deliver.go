package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxDrain bounds what is read of a receiver's answer (to reuse the
// connection); the rest is left unread.
const maxDrain = 64 << 10

// work delivers h's queued alerts one at a time until ctx ends or the
// queue is closed and empty.
func (a *Alerter) work(ctx context.Context, h *hook) {
	for {
		select {
		case <-ctx.Done():
			return
		case d, ok := <-h.queue:
			if !ok {
				return
			}
			a.deliver(ctx, h, d)
		}
	}
}

// deliver sends d, retrying with backoff on 5xx, 429, timeouts and
// connection errors, up to MaxAttempts; it logs every attempt.
func (a *Alerter) deliver(ctx context.Context, h *hook, d delivery) {
	for attempt := 1; ; attempt++ {
		start := a.o.now()
		status, retryAfter, err := a.attempt(ctx, h, d)
		elapsed := a.o.now().Sub(start)
		ok := err == nil && status >= 200 && status < 300
		retry := !ok && ctx.Err() == nil && (err != nil || status >= 500 || status == http.StatusTooManyRequests)
		args := []any{"webhook", h.Name, "event", d.kind, "event_id", d.id, "attempt", attempt, "status", status, "duration", elapsed}
		switch {
		case ok:
			a.log.Info("alert delivered", args...)
			a.count(ctx, h, "sent")
			return
		case err != nil:
			args = append(args, "err", err)
		}
		if !retry || attempt >= a.o.MaxAttempts {
			a.log.Warn("alert delivery failed", append(args, "final", true)...)
			a.count(ctx, h, "failed")
			return
		}
		wait := a.backoff(attempt)
		if retryAfter > 0 {
			wait = min(retryAfter, a.o.MaxRetryAfter)
		}
		a.log.Warn("alert delivery failed", append(args, "retry_in", wait)...)
		if a.o.sleep(ctx, wait) != nil {
			a.count(ctx, h, "failed")
			return
		}
	}
}

// backoff is the wait after the attempt-th failure: BaseBackoff doubling,
// capped at MaxBackoff.
func (a *Alerter) backoff(attempt int) time.Duration {
	d := a.o.BaseBackoff
	for i := 1; i < attempt && d < a.o.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, a.o.MaxBackoff)
}

// attempt makes one request, within AttemptTimeout: a receiver that
// hangs holds the worker no longer. It returns the status (0 without an
// answer) and the receiver's Retry-After (0: none).
func (a *Alerter) attempt(ctx context.Context, h *hook, d delivery) (int, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, a.o.AttemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(d.body))
	if err != nil {
		return 0, 0, errors.New("build request: invalid webhook url")
	}
	req.Header.Set("Content-Type", contentType(h.Format))
	req.Header.Set("User-Agent", "portcullis-alerts")
	req.Header.Set("Portcullis-Event", d.kind)
	req.Header.Set("Portcullis-Delivery", d.id)
	if len(h.Secret) > 0 {
		req.Header.Set("Portcullis-Signature", Sign(h.Secret, d.body))
	}
	resp, err := a.o.Client.Do(req)
	if err != nil {
		return 0, 0, redactURL(err)
	}
	defer resp.Body.Close()
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	var retryAfter time.Duration
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
		retryAfter, _ = ParseRetryAfter(resp.Header.Get("Retry-After"), a.o.now())
	}
	return resp.StatusCode, retryAfter, nil
}

// redactURL drops the URL from a client error: webhook URLs are secrets.
func redactURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("post: %w", ue.Err)
	}
	return err
}

// Sign is the Portcullis-Signature header value of body under secret:
// "sha256=" and the hex HMAC-SHA256.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// maxRetryAfterSeconds bounds the number a Retry-After may carry before
// it is read as "long" (callers cap the wait anyway).
const maxRetryAfterSeconds = 1 << 31

// ParseRetryAfter reads a Retry-After header (RFC 9110 10.2.3): delay
// seconds or an HTTP date, relative to now. A date in the past is 0;
// false means the value is neither.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 64 {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) && strings.Trim(v, "0123456789") == "" {
				return maxRetryAfterSeconds * time.Second, true
			}
			return 0, false
		}
		return time.Duration(min(n, maxRetryAfterSeconds)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	if d := t.Sub(now); d > 0 {
		return d, true
	}
	return 0, true
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
