package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// tag_ttl: 0 revalidates every request by tag (it used to become 5 minutes,
// so a re-pushed tag was served as its old digest).
func TestTagTTLZeroRevalidatesEveryTagRequest(t *testing.T) {
	up := startUpstream(t)
	pc := withConfig(t, up, `
default_upstream: up.test
upstreams:
  - {name: up.test, url: UPSTREAM_URL, tag_ttl: 0}
`)
	d1 := up.Push(t, "team/app", "latest", ociImage(t, 1024))
	get := func() response { return do(t, "GET", pc.URL+"/v2/team/app/manifests/latest") }
	if r := get(); r.status != 200 || r.header.Get("Docker-Content-Digest") != d1.String() {
		t.Fatalf("first: %d %v", r.status, r.header)
	}
	up.ResetCounts()
	for i := range 3 {
		if r := get(); r.header.Get("Portcullis-Cache") != "revalidated" {
			t.Fatalf("request %d: %d %v", i, r.status, r.header)
		}
	}
	if n := up.Count("HEAD", "/manifests/latest"); n != 3 {
		t.Fatalf("revalidation HEADs = %d, want 3", n)
	}
	d2 := up.Push(t, "team/app", "latest", ociImage(t, 1024))
	if r := get(); r.header.Get("Docker-Content-Digest") != d2.String() {
		t.Fatalf("re-pushed tag served as %s, want %s", r.header.Get("Docker-Content-Digest"), d2)
	}
}

// rawGet opens a connection of its own (receive buffer small, so the
// server's writes block as soon as the client stops reading) and sends a GET.
func rawGet(t *testing.T, addr, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 16<<10)
		})
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, addr); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReaderSize(c, 64<<10)
}

// readResponse reads one response's status and headers within wait.
func readResponse(c net.Conn, br *bufio.Reader, wait time.Duration) (*http.Response, error) {
	if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return nil, err
	}
	return http.ReadResponse(br, nil)
}

// With server.max_connections: 3, a fourth connection is not served while
// three are open, and is served once one of them closes.
func TestMaxConnections(t *testing.T) {
	up := startUpstream(t)
	pc := withConfig(t, up, `
default_upstream: up.test
upstreams: [{name: up.test, url: UPSTREAM_URL}]
server: {max_connections: 3}
`)
	// The harness's readiness probe may still hold a kept-alive connection.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	var held []net.Conn
	for i := range 3 {
		c, br := rawGet(t, pc.Addr, "/v2/")
		resp, err := readResponse(c, br, 20*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body) // kept alive: the slot stays taken
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("connection %d: %s", i+1, resp.Status)
		}
		held = append(held, c)
	}
	c4, br4 := rawGet(t, pc.Addr, "/v2/")
	if resp, err := readResponse(c4, br4, 1500*time.Millisecond); err == nil {
		t.Fatalf("fourth connection served (%s) while three are open", resp.Status)
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("fourth connection: %v, want no answer yet", err)
	}
	held[0].Close()
	resp, err := readResponse(c4, br4, 20*time.Second)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("fourth connection after one closed: %v %v", resp, err)
	}
}

// A client that stops reading a blob is dropped after
// server.write_idle_timeout; one that reads slowly, pausing for less than
// that each time, gets the whole blob even though the transfer takes
// several times the timeout.
func TestWriteIdleTimeout(t *testing.T) {
	up := startUpstream(t)
	pc := withConfig(t, up, `
default_upstream: up.test
upstreams: [{name: up.test, url: UPSTREAM_URL}]
server: {write_idle_timeout: 2s}
`)
	const size = 16 << 20 // more than the kernel buffers on both sides
	img := testregistryImage(t, size)
	up.Push(t, "team/app", "1", img)
	blob := layers(t, img)[0].String()
	path := "/v2/team/app/blobs/" + blob
	if r := do(t, "GET", pc.URL+path); r.status != 200 || sha(r.body) != blob {
		t.Fatalf("cold GET: %d %v", r.status, r.err)
	}
	for deadline := time.Now().Add(20 * time.Second); !cachedBlobs(t, pc.DataDir)[blob]; {
		if time.Now().After(deadline) {
			t.Fatal("blob not cached")
		}
		time.Sleep(20 * time.Millisecond)
	}

	t.Run("stalled reader is dropped", func(t *testing.T) {
		c, br := rawGet(t, pc.Addr, path)
		resp, err := readResponse(c, br, 20*time.Second)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
		if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(6 * time.Second) // three times the timeout, reading nothing
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := io.Copy(io.Discard, resp.Body)
		if err == nil || 64<<10+n >= size {
			t.Fatalf("stalled client still got the whole blob (%d more bytes, err %v)", n, err)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection not closed by the server: %v", err)
		}
	})
	t.Run("slow reader that keeps reading completes", func(t *testing.T) {
		c, br := rawGet(t, pc.Addr, path)
		resp, err := readResponse(c, br, 20*time.Second)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
		h := sha256.New()
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		for { // bounded: 16 MiB in 1 MiB steps
			n, err := io.Copy(h, io.LimitReader(resp.Body, 1<<20))
			if err != nil {
				t.Fatal(err)
			}
			if n < 1<<20 {
				break
			}
			time.Sleep(400 * time.Millisecond) // a fifth of the timeout
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != blob {
			t.Fatalf("slow reader got %s, want %s", got, blob)
		}
	})
}
