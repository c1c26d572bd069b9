package proxy_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// The response headers of an uncached blob leave as soon as the upstream
// answered, before any byte of its body arrived: the client's time to
// first byte is the upstream's plus the proxy's own, not the time the
// body's first read takes.
func TestColdBlobHeadersLeaveBeforeItsBody(t *testing.T) {
	e := newEnv(t)
	body := bytes.Repeat([]byte("portcullis"), 100_000)
	d := digest.FromBytes(body)
	release := make(chan struct{})
	e.intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/blobs/"+d.String()) || r.Method != http.MethodGet {
			return false
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("Docker-Content-Digest", d.String())
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-time.After(30 * time.Second):
		case <-r.Context().Done():
		}
		w.Write(body)
		return true
	}
	defer close(release)

	type answer struct {
		resp *http.Response
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("%s/v2/team/app/blobs/%s", e.proxy.URL, d))
		answered <- answer{resp, err}
	}()
	var a answer
	select {
	case a = <-answered:
	case <-time.After(10 * time.Second):
		t.Fatal("no response headers while the upstream holds back the body")
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
	defer a.resp.Body.Close()
	if a.resp.StatusCode != http.StatusOK || a.resp.ContentLength != int64(len(body)) {
		t.Fatalf("status %s, Content-Length %d; want 200 and %d", a.resp.Status, a.resp.ContentLength, len(body))
	}
	release <- struct{}{}
	got, err := io.ReadAll(a.resp.Body)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("body: %d bytes, %v", len(got), err)
	}
}
