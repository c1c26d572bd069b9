package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// throttleChunk is how much the throttled front writes between pauses:
// small enough that the rate holds at millisecond scale (64 KiB at
// 100 MiB/s is 0.6 ms), as a long-distance TCP stream's would.
const throttleChunk = 64 << 10

// startThrottled starts an HTTP front on loopback that forwards every
// request to upstreamURL and sends the answers' bodies back at no more than
// bytesPerSec, like an upstream behind a fast internet link. Both sides of a
// comparison go through it, so its own CPU cost falls on both. It returns
// the front's base URL.
func startThrottled(b *testing.B, upstreamURL string, bytesPerSec int64) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
	}
	srv := &http.Server{
		Handler:           throttleHandler(upstreamURL, &http.Client{Transport: tr}, bytesPerSec),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln) //nolint:errcheck // ErrServerClosed on Close
	b.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
	})
	return "http://" + ln.Addr().String()
}

func throttleHandler(upstreamURL string, c *http.Client, bytesPerSec int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), r.Method, upstreamURL+r.URL.RequestURI(), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		for _, k := range []string{"Accept", "Authorization", "Range", "If-None-Match"} {
			if v, ok := r.Header[k]; ok {
				req.Header[k] = v
			}
		}
		resp, err := c.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_ = pacedCopy(r.Context(), w, resp.Body, bytesPerSec)
	})
}

// pacedCopy copies src to w in throttleChunk pieces, sleeping whenever it
// is ahead of the schedule start + sent/bytesPerSec. The loop ends with
// the body (a registry's body is bounded) or with ctx.
func pacedCopy(ctx context.Context, w io.Writer, src io.Reader, bytesPerSec int64) error {
	buf := make([]byte, throttleChunk)
	start := time.Now()
	var sent int64
	for {
		n, rerr := io.ReadFull(src, buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			sent += int64(n)
			if ahead := paceAhead(sent, bytesPerSec, time.Since(start)); ahead > 0 {
				t := time.NewTimer(ahead)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				}
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// paceAhead is how far a sender that sent bytes in elapsed is ahead of a
// steady bytesPerSec (0 when it is not).
func paceAhead(sent, bytesPerSec int64, elapsed time.Duration) time.Duration {
	due := time.Duration(float64(sent) / float64(bytesPerSec) * float64(time.Second))
	return max(0, due-elapsed)
}
