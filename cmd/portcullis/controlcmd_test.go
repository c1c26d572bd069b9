package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/api"
	"github.com/portcullis/portcullis/store"
)

// ls pages through more than one server page and lists each entry once;
// a refused change exits 1 with the server's message.
func TestControlCommandsAgainstServer(t *testing.T) {
	ctx := context.Background()
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	const n = 2500
	for i := range n {
		if err := st.PutQuarantine(ctx, store.Quarantine{Digest: fmt.Sprintf("sha256:%064x", i+1), Reason: "bulk", CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(&api.Handler{Scans: st, OperatorStore: st, AuditLog: st})
	t.Cleanup(srv.Close)

	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"quarantine", "ls", "--server", srv.URL}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	seen := map[string]bool{}
	for _, l := range lines[1:] {
		d, _, _ := strings.Cut(l, "\t")
		if seen[d] {
			t.Fatalf("%s listed twice", d)
		}
		seen[d] = true
	}
	if lines[0] != "DIGEST\tEXPIRES\tBY\tREASON" || len(seen) != n {
		t.Fatalf("%q, %d listed", lines[0], len(seen))
	}

	stdout.Reset()
	stderr.Reset()
	code := run(ctx, []string{"exception", "add", fmt.Sprintf("sha256:%064x", 1), "--reason", "r", "--expires", "1h", "--server", srv.URL}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "server answered 409 CONFLICT: exception: sha256:") || !strings.Contains(stderr.String(), "is quarantined (bulk): not waivable") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}
