package e2e

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The event stream announces a finished scan and the verdict it led to, and
// does not hold up a graceful shutdown.
func TestEventStream(t *testing.T) {
	pc, d, _ := gateSetup(t, blockingPolicy)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", pc.URL+"/api/v1/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	go func() { // triggers the scan and the verdict; the answer itself does not matter here
		if r, err := http.Get(pc.URL + "/v2/library/alpine/manifests/3.16.9"); err == nil {
			r.Body.Close()
		}
	}()
	seen := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	event := ""
	for sc.Scan() && len(seen) < 2 {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: ") && strings.Contains(line, d):
			seen[event] = line
		}
	}
	if !strings.Contains(seen["scan"], `"state":"done"`) || !strings.Contains(seen["verdict"], `"to":"block"`) || !strings.Contains(seen["verdict"], "VULNERABLE") {
		t.Fatalf("events: %v (scan err %v)", seen, sc.Err())
	}
	began := time.Now()
	if err := pc.Stop(); err != nil {
		t.Fatalf("shutdown with an open event stream: %v", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("shutdown took %v with an open event stream", took)
	}
}
