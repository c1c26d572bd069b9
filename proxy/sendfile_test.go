package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/portcullis/portcullis/telemetry"
)

// wireCounts tells how the body bytes of the proxy's answers reached the
// connection: through Write (copied through user space) or through
// ReadFrom with a file as the source (sendfile).
type wireCounts struct {
	written  atomic.Int64 // bytes given to Write, headers included
	fromFile atomic.Int64 // bytes sent by ReadFrom from an *os.File
}

// countingListener hands out connections that count, and still send a
// file with the kernel's sendfile: their ReadFrom is the *net.TCPConn's.
type countingListener struct {
	net.Listener
	counts *wireCounts
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("accepted a %T, want *net.TCPConn", c)
	}
	return &countingConn{TCPConn: tc, counts: l.counts}, nil
}

type countingConn struct {
	*net.TCPConn
	counts *wireCounts
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.TCPConn.Write(p)
	c.counts.written.Add(int64(n))
	return n, err
}

func (c *countingConn) ReadFrom(r io.Reader) (int64, error) {
	src := r
	if lr, ok := r.(*io.LimitedReader); ok {
		src = lr.R
	}
	if _, ok := src.(*os.File); !ok {
		return io.Copy(struct{ io.Writer }{c}, r) // counted by Write
	}
	n, err := c.TCPConn.ReadFrom(r)
	c.counts.fromFile.Add(n)
	return n, err
}

// A blob leaves the proxy by sendfile, with the request log, metrics and
// traces on: a cached blob from its file, whole or a range, and a download
// in flight from its spool file as it grows. Only the headers and the first
// bytes net/http sniffs go through Write; a writer on the way that hid
// ReadFrom would send every byte through Write instead.
func TestBlobBodiesLeaveBySendfile(t *testing.T) {
	const size = 4 << 20
	// Headers, and the first 512 bytes net/http copies before it switches
	// to ReadFrom (a few times at most, if the first bytes of a download
	// arrive in small pieces).
	const maxWritten = 64 << 10
	tests := []struct {
		name     string
		inFlight bool // the upstream holds back the second half until the client has read some
		rangeHdr string
		wantFrom int64 // the body's first byte
	}{
		{name: "cached blob"},
		{name: "range of a cached blob", rangeHdr: "bytes=1000-", wantFrom: 1000},
		{name: "download in flight", inFlight: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			counts := &wireCounts{}
			logBuf := &lockedBuffer{}
			metrics, err := telemetry.NewProxyMetrics(sdkmetric.NewMeterProvider().Meter("test"))
			if err != nil {
				t.Fatal(err)
			}
			spans := tracetest.NewInMemoryExporter()
			tracer := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans)).Tracer("test")
			e := newEnv(t, withLog(logBuf), func(c *envConfig) {
				c.metrics, c.tracer = metrics, tracer
				c.listener = func(ln net.Listener) net.Listener { return countingListener{ln, counts} }
			})
			img, err := random.Image(size, 1)
			if err != nil {
				t.Fatal(err)
			}
			e.push(t, "team/app:1.0", img)
			ls, _ := img.Layers()
			layer, _ := ls[0].Digest()
			rc, _ := ls[0].Compressed()
			blob, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			url := e.proxy.URL + "/v2/team/app/blobs/" + layer.String()
			get := func(t *testing.T, rangeHdr string, afterFirst func()) ([]byte, string) {
				t.Helper()
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				if rangeHdr != "" {
					req.Header.Set("Range", rangeHdr)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				first := make([]byte, 64<<10)
				n, err := io.ReadFull(resp.Body, first)
				if err != nil {
					t.Fatalf("first bytes: %v", err)
				}
				if afterFirst != nil {
					afterFirst()
				}
				rest, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("body after %d bytes: %v", n, err)
				}
				return append(first[:n], rest...), resp.Header.Get("Portcullis-Cache")
			}

			var release func()
			if tc.inFlight {
				held := make(chan struct{})
				var once atomic.Bool
				release = func() {
					if once.CompareAndSwap(false, true) {
						close(held)
					}
				}
				t.Cleanup(release)
				e.intercept = func(w http.ResponseWriter, r *http.Request) bool {
					if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, "/blobs/"+layer.String()) {
						return false
					}
					w.Header().Set("Content-Length", fmt.Sprint(len(blob)))
					w.Write(blob[:len(blob)/2])
					w.(http.Flusher).Flush()
					select { // bounded: the client releases it after its first bytes
					case <-held:
					case <-time.After(30 * time.Second):
					}
					w.Write(blob[len(blob)/2:])
					return true
				}
			} else {
				// Cache it, and let it be verified by a whole GET once its
				// file is older than the verification's racy window
				// (cache/verify.go): until then a GET hashes it on its way
				// out, by design, through user space.
				if _, src := get(t, "", nil); src != "miss" {
					t.Fatalf("first GET: Portcullis-Cache %q, want miss", src)
				}
				waitFor(t, func() bool { return cachedBlob(t, e, layer.String()) })
				time.Sleep(200 * time.Millisecond)
				if _, src := get(t, "", nil); src != "hit" {
					t.Fatalf("second GET: Portcullis-Cache %q, want hit", src)
				}
			}

			counts.written.Store(0)
			counts.fromFile.Store(0)
			body, src := get(t, tc.rangeHdr, release)
			if !bytes.Equal(body, blob[tc.wantFrom:]) {
				t.Fatalf("body: %d bytes, want %d bytes of the blob from %d", len(body), len(blob)-int(tc.wantFrom), tc.wantFrom)
			}
			want := map[bool]string{true: "miss", false: "hit"}[tc.inFlight]
			if src != want {
				t.Fatalf("Portcullis-Cache %q, want %q", src, want)
			}
			// The log line is written once the handler returns, which may
			// be just after the client read the last byte; so are the
			// counts of its last sendfile.
			waitFor(t, func() bool { return strings.Count(logBuf.String(), `"bytes":`+fmt.Sprint(len(body))+",") > 0 })
			written, fromFile := counts.written.Load(), counts.fromFile.Load()
			if written > maxWritten || fromFile < int64(len(body))-maxWritten {
				t.Fatalf("%d bytes went out through Write and %d by sendfile for a %d-byte body: something on the way hides ReadFrom",
					written, fromFile, len(body))
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer the server's goroutines may write while
// the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met within 10 s")
}
