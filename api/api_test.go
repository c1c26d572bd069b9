package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/portcullis/portcullis/proxy"
	"github.com/portcullis/portcullis/store"
)

func TestGetScan(t *testing.T) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	done := "sha256:aa00000000000000000000000000000000000000000000000000000000000000"
	pending := "sha256:bb00000000000000000000000000000000000000000000000000000000000000"
	for _, r := range []store.ScanRecord{{Digest: done, State: store.ScanDone, DBVersion: "v1"}, {Digest: pending, State: store.ScanPending}} {
		if err := st.PutScan(context.Background(), &r); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, path, inForce string
		status              int
		stale               bool
	}{
		{"matched against the database in force", "/api/v1/scans/" + done, "v1", 200, false},
		{"matched against an older database", "/api/v1/scans/" + done, "v2", 200, true},
		{"database not known yet", "/api/v1/scans/" + done, "", 200, false},
		{"pending results are never stale", "/api/v1/scans/" + pending, "v2", 200, false},
		{"unknown digest", "/api/v1/scans/sha256:cc00000000000000000000000000000000000000000000000000000000000000", "v1", 404, false},
		{"invalid digest", "/api/v1/scans/sha256:xyz", "v1", 400, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{Scans: st, DBVersion: func() string { return tc.inForce }}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil))
			var body struct {
				Stale bool   `json:"stale"`
				Error string `json:"error"`
			}
			if w.Code != tc.status || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Stale != tc.stale {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if tc.status != 200 && body.Error == "" {
				t.Fatalf("error without a message: %s", w.Body)
			}
		})
	}
}

type refusingResolver struct{}

func (refusingResolver) Resolve(ctx context.Context, ref string) (proxy.Resolved, error) {
	return proxy.Resolved{}, fmt.Errorf("%w: %s: user ci-bot may not pull ghcr.io/other/x", proxy.ErrAccessDenied, ref)
}

func (refusingResolver) IndexChildren(context.Context, string, string, digest.Digest) ([]v1.Descriptor, error) {
	return nil, fmt.Errorf("%w: not an index", proxy.ErrAccessDenied)
}

// A scan request for an image the caller may not pull is refused like the
// pull itself.
func TestRequestScanAccessDenied(t *testing.T) {
	h := &Handler{Resolver: refusingResolver{}}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/api/v1/scans?image=ghcr.io/other/x:1", nil))
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "may not pull") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

// A store failure reaches the client as "internal error" and a request id,
// the cause only the log (with the same id). It used to send the error text.
func TestInternalErrorShowsRequestIDNotCause(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	st.Close() // every read now fails
	var logs bytes.Buffer
	h := &Handler{Scans: st, Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/scans/sha256:aa00000000000000000000000000000000000000000000000000000000000000", nil))
	id := w.Header().Get(proxy.RequestIDHeader)
	var body struct{ Error string }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(id) != 16 {
		t.Fatalf("id %q body %s", id, w.Body)
	}
	if w.Code != http.StatusInternalServerError || body.Error != "internal error, request id "+id {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if strings.Contains(w.Body.String(), "database") || strings.Contains(w.Body.String(), path) {
		t.Fatalf("body has internal detail: %s", w.Body)
	}
	if l := logs.String(); !strings.Contains(l, `"request_id":"`+id+`"`) || !strings.Contains(l, "database not open") {
		t.Fatalf("log lacks the id or the cause: %s", l)
	}
	// Other answers carry an id too.
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/nothing", nil))
	if w.Code != http.StatusNotFound || len(w.Header().Get(proxy.RequestIDHeader)) != 16 {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
}
