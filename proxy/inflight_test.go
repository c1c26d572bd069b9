package proxy_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// InFlight counts the /v2/ requests being served (what the re-match
// yields to): one while a request waits on its upstream, none once done.
func TestInFlightCountsRequestsBeingServed(t *testing.T) {
	e := newEnv(t)
	entered, release := make(chan struct{}), make(chan struct{})
	e.intercept = func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.Contains(r.URL.Path, "/manifests/") {
			return false
		}
		close(entered)
		<-release
		w.WriteHeader(http.StatusNotFound)
		return true
	}
	if n := e.p.InFlight(); n != 0 {
		t.Fatalf("before any request: %d in flight", n)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := http.Get(e.proxy.URL + "/v2/app/manifests/v1")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	select {
	case <-entered:
	case <-time.After(20 * time.Second):
		t.Fatal("the request never reached the upstream")
	}
	if n := e.p.InFlight(); n != 1 {
		t.Errorf("while a request is served: %d in flight, want 1", n)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The count drops when the handler returns, just after the answer.
	for deadline := time.Now().Add(10 * time.Second); e.p.InFlight() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after the request: %d in flight", e.p.InFlight())
		}
	}
}
